package server

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// A resume token is opaque to clients. Inside it is a version byte, the
// store epoch (random per process start, so a token from before a restart
// is recognised and refused) and the revision the client has seen.
const tokenVersion = 1

type resumeToken struct {
	Epoch    uint64
	Revision int64
}

// tokenLen is the length of every encoded resume token.
var tokenLen = base64.RawURLEncoding.EncodedLen(17)

func (t resumeToken) String() string { return string(t.appendTo(nil)) }

// appendTo appends the encoded token to dst without an intermediate string
// (the watch fan-out writes one into every frame).
func (t resumeToken) appendTo(dst []byte) []byte {
	var b [17]byte
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:9], t.Epoch)
	binary.BigEndian.PutUint64(b[9:17], uint64(t.Revision))
	return base64.RawURLEncoding.AppendEncode(dst, b[:])
}

var errBadToken = errors.New("malformed resume token")

func parseResumeToken(s string) (resumeToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != tokenVersion {
		return resumeToken{}, fmt.Errorf("%w: use a token from an EventBatch, SnapshotEnd or Progress frame unchanged", errBadToken)
	}
	t := resumeToken{
		Epoch:    binary.BigEndian.Uint64(b[1:9]),
		Revision: int64(binary.BigEndian.Uint64(b[9:17])),
	}
	if t.Revision < 0 {
		return resumeToken{}, fmt.Errorf("%w: negative revision", errBadToken)
	}
	return t, nil
}

// Page tokens carry the sort key of the last item of the previous page
// (a call's uid, a device's name); lists are in that order, so a page never
// repeats or skips an item that stays.
func pageToken(cursor string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{tokenVersion}, cursor...))
}

func parsePageToken(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != tokenVersion {
		return "", errors.New("malformed page token: pass next_page_token from the previous response unchanged")
	}
	return string(b[1:]), nil
}
