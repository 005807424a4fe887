package links

import (
	"fmt"
	"slices"
	"strings"
)

// Browsers whose ClientHello Burrow's client sends (internal/camo), as FingerprintBrowser
// names them. BrowserRandom is one of the three, picked once per process.
const (
	BrowserChrome  = "chrome"
	BrowserFirefox = "firefox"
	BrowserSafari  = "safari"
	BrowserRandom  = "random"
)

// fingerprints maps every fp= name Xray-core (v1.260327.0 and later,
// transport/internet/tls: PresetFingerprints, ModernFingerprints, OtherFingerprints) accepts
// with REALITY to the closest hello Burrow ships: a current Chrome, Firefox or Safari. Old
// versions map to the current one of their browser (a 2020 hello stands out more today than
// the browser's own current one); Chromium-based browsers (Edge, 360, QQ) and Android
// (Chrome's hello; Xray's is the OkHttp library's) to Chrome; iOS to Safari (one TLS stack);
// Xray's randomized hellos, which no browser sends, to a real browser picked at random.
var fingerprints = map[string]string{
	"chrome": BrowserChrome, "edge": BrowserChrome, "android": BrowserChrome, "360": BrowserChrome, "qq": BrowserChrome,
	"firefox": BrowserFirefox,
	"safari":  BrowserSafari, "ios": BrowserSafari,
	"random": BrowserRandom, "randomized": BrowserRandom, "randomizednoalpn": BrowserRandom,
	"hellorandomized": BrowserRandom, "hellorandomizedalpn": BrowserRandom, "hellorandomizednoalpn": BrowserRandom,

	"hellochrome_auto": BrowserChrome, "hellochrome_58": BrowserChrome, "hellochrome_62": BrowserChrome,
	"hellochrome_70": BrowserChrome, "hellochrome_72": BrowserChrome, "hellochrome_83": BrowserChrome,
	"hellochrome_87": BrowserChrome, "hellochrome_96": BrowserChrome, "hellochrome_100": BrowserChrome,
	"hellochrome_102": BrowserChrome, "hellochrome_106_shuffle": BrowserChrome, "hellochrome_120": BrowserChrome,
	"hellochrome_131": BrowserChrome, "hellochrome_133": BrowserChrome, "hellochrome_100_psk": BrowserChrome,
	"hellochrome_112_psk_shuf": BrowserChrome, "hellochrome_114_padding_psk_shuf": BrowserChrome,
	"hellochrome_115_pq": BrowserChrome, "hellochrome_115_pq_psk": BrowserChrome, "hellochrome_120_pq": BrowserChrome,
	"helloedge_auto": BrowserChrome, "helloedge_85": BrowserChrome, "helloedge_106": BrowserChrome,
	"hello360_auto": BrowserChrome, "hello360_7_5": BrowserChrome, "hello360_11_0": BrowserChrome,
	"helloqq_auto": BrowserChrome, "helloqq_11_1": BrowserChrome, "helloandroid_11_okhttp": BrowserChrome,

	"hellofirefox_auto": BrowserFirefox, "hellofirefox_55": BrowserFirefox, "hellofirefox_56": BrowserFirefox,
	"hellofirefox_63": BrowserFirefox, "hellofirefox_65": BrowserFirefox, "hellofirefox_99": BrowserFirefox,
	"hellofirefox_102": BrowserFirefox, "hellofirefox_105": BrowserFirefox, "hellofirefox_120": BrowserFirefox,
	"hellofirefox_148": BrowserFirefox,

	"hellosafari_auto": BrowserSafari, "hellosafari_16_0": BrowserSafari, "hellosafari_26_3": BrowserSafari,
	"helloios_auto": BrowserSafari, "helloios_11_1": BrowserSafari, "helloios_12_1": BrowserSafari,
	"helloios_13": BrowserSafari, "helloios_14": BrowserSafari,
}

// presetFingerprints are the names GUI clients offer (Xray's PresetFingerprints), listed
// first in errors.
var presetFingerprints = []string{"chrome", "firefox", "safari", "ios", "android", "edge", "360", "qq", "random", "randomized", "randomizednoalpn"}

// Fingerprints returns every accepted fp= name: the presets GUI clients offer, then
// Xray-core's hello… names, sorted.
func Fingerprints() []string {
	var hello []string
	for name := range fingerprints {
		if !slices.Contains(presetFingerprints, name) {
			hello = append(hello, name)
		}
	}
	slices.Sort(hello)
	return append(slices.Clone(presetFingerprints), hello...)
}

// FingerprintBrowser returns the browser (BrowserChrome, BrowserFirefox, BrowserSafari or
// BrowserRandom) whose ClientHello Burrow sends for the fp= name fp ("" is chrome), or an
// error listing the accepted names.
func FingerprintBrowser(fp string) (string, error) {
	if fp == "" {
		return BrowserChrome, nil
	}
	if b, ok := fingerprints[fp]; ok {
		return b, nil
	}
	switch fp {
	case "unsafe", "hellogolang":
		return "", fmt.Errorf("%q sends Go's own ClientHello, which censors recognise (Xray-core refuses it with REALITY too); use chrome", fp)
	}
	return "", fmt.Errorf("%.40q is not a fingerprint name; want one of %s, or Xray-core's %s",
		fp, strings.Join(presetFingerprints, ", "), strings.Join(Fingerprints()[len(presetFingerprints):], ", "))
}
