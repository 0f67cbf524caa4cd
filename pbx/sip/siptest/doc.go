// Package siptest runs real SIP endpoints on loopback for tests: SIPp
// with embedded scenarios (register, call, answer, busy, reject, no
// answer) and baresip, a real soft phone, driven through its ctrl_tcp
// module (dial, accept, hangup, hold, resume, transfer, and the call
// events it reports). Both are Debian packages (sip-tester,
// baresip-core) that scripts/test-deps.sh installs.
//
// Every process binds 127.0.0.1 only, is bounded (SIPp by call count
// and timeout), and is killed when the test ends; its output is shown
// when the test failed. See package sip's documentation for how the
// B2BUA tests use them.
package siptest
