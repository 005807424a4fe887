package camo

import utls "github.com/refraction-networking/utls"

// BrowserHelloSpec returns a fresh ClientHello spec of the named fingerprint
// (a Fingerprints name; "" is chrome), for a client that must send exactly
// what Burrow's REALITY client sends, without REALITY: the censor lab's
// benign controls browse with it, so its detectors are calibrated on the
// same browser hello that Burrow imitates.
func BrowserHelloSpec(name string) (*utls.ClientHelloSpec, error) { return helloSpec(name) }
