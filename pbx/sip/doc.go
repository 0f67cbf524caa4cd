// Package sip is the channel driver for real SIP phones: an Endpoint
// (sipgo user agent with UDP and TCP listeners), a Registrar (digest
// authentication against the directory's SIP accounts, bindings with
// expiry, device up/down events), and the back-to-back user agent built
// on them.
//
// # Wiring
//
//	ep, err := sip.NewEndpoint(sip.EndpointConfig{Addr: "127.0.0.1:5060"})
//	reg := sip.NewRegistrar(dir, sip.RegistrarConfig{OnChange: engineDeviceStatus})
//	reg.Attach(ep)                   // REGISTER
//	ep.Handle(sipmsg.INVITE, b2bua.onInvite) // and ACK, BYE, CANCEL, REFER, ...
//	err = ep.Start()
//	defer reg.Close(); defer ep.Close()
//
// Handlers must all be attached before Start. Methods without a handler
// are answered 405.
//
// # Reaching a phone
//
// Route to a device by its registrar bindings, never by a Contact's user
// part (baresip registers Contact user "201-0x…" for device 201):
//
//	for _, b := range reg.Bindings("SIP/201") {
//		req := sipmsg.NewRequest(sipmsg.INVITE, b.Contact) // Request-URI: the Contact as registered
//		ep.RouteTo(req, b) // to where the REGISTER came from, from the socket it went to
//		...
//	}
//
// Requests from phones to the B2BUA (INVITE, REFER) are authenticated
// with reg.Authenticate(req, tx): it returns the device, or has answered
// 407/403/400 itself.
//
// # Digest authentication
//
// Accounts store HA1 only (directory.SIPAccount); the registrar accepts
// MD5 and SHA-256 (RFC 7616/8760) with qop=auth, offering SHA-256 first
// when the account has it. Nonces live five minutes, are bound to the
// source IP that was challenged and to a growing nonce count (no
// replay); an answer with a correct password and an expired nonce gets a
// new challenge with stale=true. A wrong answer is 403, and a source
// with five wrong answers in a row is refused (403, Retry-After) until
// its allowance refills. The digest uri is not compared with the
// Request-URI, because SIPp answers with the server's address there.
// Neither passwords nor HA1s are ever logged.
//
// # Tests with real phones
//
// Package siptest starts SIPp and baresip on loopback. A B2BUA test
// starts the endpoint and registrar (127.0.0.1:0), lets real phones
// register with the demo credentials (device SIP/N: user N, password
// demo-sip-N), waits for the registrar's up events, and then drives
// calls through the API while the phones act and report:
//
//	alice := siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "demo-sip-201", Registrar: ep.Addr()})
//	alice.WaitEvent(limit, "REGISTER_OK")           // and the registrar's DeviceEvent{Up: true}
//	reception := siptest.StartBaresip(t, ... User: "202" ...)
//
//	Dial (API, SIP/201 → 202)   the B2BUA INVITEs 201 first (click-to-dial: AutoAnswer, or alice.Accept)
//	                            then 202: reception.WaitEvent(limit, "CALL_INCOMING")
//	answer                      reception.Accept(); both see CALL_ESTABLISHED, the API shows up/up
//	hold                        Hold (API) → re-INVITE a=sendonly to the held party; or alice.Hold()
//	                            (the phone's own re-INVITE) → the engine's held event
//	talk                        Talk (API) → re-INVITE a=sendrecv; or alice.Resume()
//	blind transfer              Xfer (API); or alice.Transfer("sip:203@…") (REFER: baresip hangs up
//	                            on 202 Accepted, without waiting for the NOTIFY)
//	hang up                     Hangup (API) → BYE to both; or reception.Hangup() → CALL_CLOSED on both
//
// SIPp covers the far ends that must behave exactly: register a device
// with the Register scenario, then run a UAS scenario on the same Port
// (the registrar's binding points there) to be that device:
//
//	siptest.StartSIPp(t, siptest.SIPpOptions{Scenario: siptest.Register, Remote: ep.Addr(), Port: p,
//		Service: "203", AuthUser: "203", AuthPassword: "demo-sip-203", Expires: 600}).Wait()
//	uas := siptest.StartSIPp(t, siptest.SIPpOptions{Scenario: siptest.UASBusy, Port: p})
//	// Dial 203 through the API: the caller sees 486, the API shows cause 17; uas.Wait() == nil
//
// UASAnswer answers (and follows hold/resume re-INVITEs, ending on BYE),
// UASBusy answers 486, UASReject 603, UASNoAnswer rings until CANCEL
// (ring timeout, cause 19). UACAuth places a call from a registered
// device through the switch, answering its 407. A UAS scenario counts
// every new Call-ID as a call: do not send it OPTIONS keepalives.
//
// # The B2BUA (NewSwitch)
//
// NewSwitch puts the endpoint, the registrar and the back-to-back user
// agent together behind the call engine; the B2BUA is the engine's
// channel driver (pbx.Driver). Every leg on a phone is one dialog
// between the B2BUA and that phone: a server dialog when the phone
// called (its INVITE, authenticated with 407, becomes Engine.Originated
// and is routed by the dial plan), a client dialog when the engine rings
// a device (an INVITE to each of its bindings). Media is never relayed:
// the callee is offered the caller's SDP and the caller gets the
// callee's answer; later bridges (transfer, pickup) re-INVITE each phone
// with the other's description. Click-to-dial (the API's Dial) first
// INVITEs the caller's own phone with an SDP that has no media (RFC 3725
// flow IV; Call-Info answer-after=0 when auto-answer is asked); its answer
// is offered to the callee, and the caller is re-INVITEd with the
// callee's answer once it picks up.
//
// Signalling maps onto engine events: 2xx → Answered, 486/600 → 17,
// 480/408 → 19, 603/403 → 21, 404 → 1 (Refused), BYE and CANCEL from a
// phone → HungUp, a phone's re-INVITE sendonly/inactive or sendrecv →
// Held. The engine's decisions map back: Hangup is a final response to
// a phone's own unanswered INVITE (486, 480, 603, 404 or 487 by cause),
// CANCEL of an unanswered INVITE of ours, or BYE (to a phone's own call
// once it acknowledged the 2xx, RFC 3261 section 15); Hold and Talk
// re-INVITE the other party sendonly / sendrecv.
//
// A phone transfers with REFER inside a call (refer.go): Refer-To a
// number is the API's Xfer of that call, Refer-To with Replaces naming
// the phone's other call is AtXfer of the two, so the events are the
// same. The REFER is digest-authenticated like an INVITE (407) and must
// come from the call's own device; it is answered 202 once the engine
// committed the transfer, followed by NOTIFYs (sipfrag "100 Trying", then
// the final status) and a BYE of the referred call (and of the other
// call for an attended transfer). A REFER the engine refuses changes
// nothing: 404 for a number that leads nowhere, 403 for a call that is
// not answered, 481 for a call or Replaces that does not exist, 400 or
// 416 for a malformed Refer-To.
//
// A phone that vanishes mid-call without a BYE is noticed two ways
// (sessiontimer.go): its registration (the device's last binding expires
// or is removed: its dialogs end), and an in-dialog OPTIONS every
// SessionProbe (90 s) on each established dialog (481, 408 or no answer
// within ProbeTimeout: the dialog is gone). Either way the engine ends
// the leg and its peer with cause 27 (pbx.Engine.Lost), and the peer's
// phone gets a BYE. Close sends CANCEL to the phones the B2BUA still
// rings and 503 to the phones whose own call is unanswered (close.go);
// established calls are left to the phones.
//
// Calls are bounded (limits.go): per device by its directory entry's
// sip.max_dialogs (486 with Retry-After to its INVITE, busy 17 when it
// would be rung), per source address by Config.MaxDialogsPerSource (503
// with Retry-After); a refused INVITE reaches neither the engine nor the
// store.
//
// # The trunk (Config.Trunk)
//
// External numbers go out through one SIP trunk as INVITEs to
// sip:number@trunk, offering the calling leg's description and answering
// the trunk's digest challenge with its credentials. The trunk's 2xx is
// RemoteAnswered; a refusal is RemoteEnded with its Reason header's
// Q.850 cause (RFC 3326) or else the status code's (486 → 17, 480/408 →
// 19, 603 → 21, 404 → 1, ...); a BYE from it ends the call with 16 (or
// its Reason); no answer within the ring timeout CANCELs it (19). The
// engine's end of an external party is BYE, CANCEL, or a refusal of
// the trunk's own INVITE. INVITEs whose source address is the trunk
// host's are calls from outside, not challenged: the Request-URI's user
// is the dialled extension (Engine.InboundBind: ring-all, hunt, queue
// as for the simulator's inbound calls), the From header the caller.
// The phones that ring get the trunk's offer, and the first that
// answers gives the trunk its description. A trunk dialog is filed
// beside the legs' under minus its external party's id (remoteKey).
// Without a trunk external numbers are refused with cause 3.
//
// # DTMF (dtmf.go)
//
// The API's Dtmf on a phone's up call sends SIP INFO (application/
// dtmf-relay) to the other party of that call, a phone or the trunk, in
// order, one transaction at a time; a phone's or the trunk's own INFO
// (dtmf-relay or application/dtmf) goes on to its other party. INFO, not
// RFC 4733: those events travel in the RTP stream, which never passes
// through the switch.
//
// # Remote answer (answer.go)
//
// A device whose sip block says remote_answer: talk-event can be told to
// answer: the API's Talk on its ringing call sends "NOTIFY Event: talk"
// in the INVITE's early dialog, and the phone's 200 answers as usual.
// For the others (remote_answer: none, the default) Talk on a ringing
// call is FAILED_PRECONDITION NOT_SUPPORTED.
//
// # Every binding rings (fork.go)
//
// A device registered from several contacts rings on all of them, one
// INVITE per binding; the first 2xx wins and the others get CANCEL (a
// 2xx that comes anyway gets ACK and BYE); when all refuse, the leg ends
// with the best refusal's cause (6xx, then busy, then another 4xx, then
// 5xx).
package sip
