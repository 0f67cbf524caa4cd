package sip

import (
	"errors"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// causeOf maps a phone's final refusal to the Q.850 cause the engine
// records (RFC 3398's table, as Asterisk applies it).
func causeOf(status int) int32 {
	switch status {
	case sipmsg.StatusNotFound, 410, 484:
		return pbx.CauseUnallocated
	case sipmsg.StatusBusyHere, 600:
		return pbx.CauseUserBusy
	case sipmsg.StatusTemporarilyUnavailable, sipmsg.StatusRequestTimeout:
		return pbx.CauseNoAnswer
	case 603, sipmsg.StatusForbidden:
		return pbx.CauseRejected
	case sipmsg.StatusRequestTerminated:
		return pbx.CauseNormalClearing
	case sipmsg.StatusServiceUnavailable:
		return 34 // circuit/channel congestion
	}
	return 31 // normal, unspecified
}

// statusOfCause is the response a caller's own INVITE gets when the
// engine ends its leg before it was answered (RFC 3398's Q.850 → SIP
// table for the causes the engine uses; the rest 503).
func statusOfCause(cause int32) (int, string) {
	switch cause {
	case pbx.CauseUnallocated:
		return sipmsg.StatusNotFound, "Not Found"
	case pbx.CauseNoRoute:
		return sipmsg.StatusNotFound, "No Route to Destination"
	case pbx.CauseUserBusy:
		return sipmsg.StatusBusyHere, "Busy Here"
	case pbx.CauseNoAnswer, pbx.CauseNoUserResponding, pbx.CauseAbsent:
		return sipmsg.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	case pbx.CauseRejected:
		return 603, "Decline"
	case pbx.CauseNormalClearing, pbx.CauseRedirected, pbx.CauseAnsweredElse:
		return sipmsg.StatusRequestTerminated, "Request Terminated"
	case pbx.CauseOutOfOrder: // the phone it rang vanished
		return sipmsg.StatusBadGateway, "Bad Gateway"
	}
	return sipmsg.StatusServiceUnavailable, "Service Unavailable"
}

// statusOf is the response to a phone's INVITE the engine refused.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, pbx.ErrInvalidNumber):
		return sipmsg.StatusNotFound, "Not Found"
	case errors.Is(err, pbx.ErrLimit):
		return sipmsg.StatusBusyHere, "Busy Here"
	case errors.Is(err, pbx.ErrNotSupported):
		return sipmsg.StatusForbidden, "Forbidden"
	}
	return sipmsg.StatusServiceUnavailable, "Service Unavailable"
}
