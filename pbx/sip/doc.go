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
//		req.SetDestination(b.Destination())                // sent to where the REGISTER came from
//		req.SetTransport(b.Transport)
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
package sip
