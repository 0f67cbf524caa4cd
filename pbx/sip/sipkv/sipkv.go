// Package sipkv keeps the sip registrar's bindings in a JetStream KV
// bucket (sip.BindingStore): the leader of a replicated switch saves each
// device's bindings as phones register, and the next leader loads them,
// so it can ring a phone that registered with the previous leader
// without waiting for that phone's next REGISTER.
//
// One key per device (its name, base64url-encoded: device names may hold
// characters a key may not); the value is the device's bindings as JSON:
// contact, source address, transport, Call-ID, CSeq, User-Agent and
// expiry. No credentials: a registrar's binding holds none. A follower
// answers a device's status from the same bucket (Store.Status), so it
// says what the leader knows.
package sipkv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/pbx"
	"callcontrold/pbx/sip"
)

// Suffix names the bucket beside the replicas' log: Stream+"_SIPREG".
const Suffix = "SIPREG"

// timeout bounds one read or write of the bucket.
const timeout = 5 * time.Second

// Store is a sip.BindingStore over a KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	log *slog.Logger
}

var _ sip.BindingStore = (*Store)(nil)

// New returns the store over kv; log (nil: slog.Default()) receives the
// writes that failed.
func New(kv jetstream.KeyValue, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{kv: kv, log: log}
}

// stored is one binding as the bucket keeps it.
type stored struct {
	Contact   string         `json:"contact"`
	Source    netip.AddrPort `json:"source"`
	Transport string         `json:"transport"`
	CallID    string         `json:"call_id"`
	CSeq      uint32         `json:"cseq"`
	UserAgent string         `json:"user_agent,omitempty"`
	Expires   time.Time      `json:"expires"`
}

// record is one device's value.
type record struct {
	Device   string   `json:"device"`
	Bindings []stored `json:"bindings"`
}

func key(device string) string { return base64.RawURLEncoding.EncodeToString([]byte(device)) }

// Save implements sip.BindingStore: it replaces the device's bindings,
// or deletes its key when none is left.
func (s *Store) Save(device string, bindings []sip.Binding) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	if len(bindings) == 0 {
		err = s.kv.Delete(ctx, key(device))
	} else {
		rec := record{Device: device}
		for _, b := range bindings {
			rec.Bindings = append(rec.Bindings, stored{Contact: b.Contact.String(), Source: b.Source, Transport: b.Transport,
				CallID: b.CallID, CSeq: b.CSeq, UserAgent: b.UserAgent, Expires: b.Expires})
		}
		var v []byte
		if v, err = json.Marshal(rec); err == nil {
			_, err = s.kv.Put(ctx, key(device), v)
		}
	}
	if err != nil {
		s.log.Warn("sip: registration not saved: a next leader knows the device once it registers again", "device", device, "error", err)
	}
}

// Load implements sip.BindingStore. A value it cannot read is skipped
// (logged): that device comes back as it registers again.
func (s *Store) Load() (map[string][]sip.Binding, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := map[string][]sip.Binding{}
	keys, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sipkv: list: %w", err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("sipkv: get: %w", err)
		}
		rec, err := decode(e.Value())
		if err != nil || key(rec.Device) != k {
			s.log.Warn("sip: a saved registration is unreadable: skipped", "key", k, "error", err)
			continue
		}
		for _, b := range rec.Bindings {
			var contact sipmsg.Uri
			if err := sipmsg.ParseUri(b.Contact, &contact); err != nil {
				s.log.Warn("sip: a saved contact is unreadable: skipped", "device", rec.Device, "error", err)
				continue
			}
			out[rec.Device] = append(out[rec.Device], sip.Binding{Contact: contact, Source: b.Source, Transport: b.Transport,
				CallID: b.CallID, CSeq: b.CSeq, UserAgent: b.UserAgent, Expires: b.Expires})
		}
	}
	return out, nil
}

func decode(v []byte) (record, error) {
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, err
	}
	if rec.Device == "" {
		return rec, errors.New("no device")
	}
	return rec, nil
}

// statusTimeout bounds the read behind Status: a GetDevice on a
// follower answers unknown rather than wait on a slow bucket.
const statusTimeout = time.Second

// Status answers a device's registration status as the leader saved it,
// for a follower (which runs no registrar): up while one of its saved
// bindings is live, down when none is, unknown when the bucket cannot be
// read. The caller asks only about SIP phones of the directory.
func (s *Store) Status(device string) pbx.DeviceStatus {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, key(device))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return pbx.StatusDown
	}
	if err != nil {
		return pbx.StatusUnknown
	}
	rec, err := decode(e.Value())
	if err != nil || rec.Device != device {
		return pbx.StatusUnknown
	}
	now := time.Now()
	for _, b := range rec.Bindings {
		if b.Expires.After(now) {
			return pbx.StatusUp
		}
	}
	return pbx.StatusDown
}
