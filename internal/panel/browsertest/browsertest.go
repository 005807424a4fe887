// Package browsertest drives a headless Chromium for the web panel's tests:
// it starts the browser (failing the test, never skipping it, when Chromium
// is missing), takes screenshots, reads QR codes from them and runs the
// axe-core accessibility checks. The browser can reach loopback addresses
// only: every other host name fails to resolve and every other address goes
// to a proxy that does not exist.
//
// Only tests import it; it is not part of the burrow binary.
package browsertest

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"image"
	"image/draw"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// Step is how long one browser step may take on a busy machine.
const Step = 90 * time.Second

// execNames are the names Chromium goes by.
var execNames = []string{"chromium", "chromium-browser", "google-chrome", "chrome"}

// New starts a headless Chromium for t and returns the context of its first
// tab; the browser ends with the test. A missing Chromium fails the test.
func New(t testing.TB) context.Context {
	t.Helper()
	var path string
	for _, n := range execNames {
		if p, err := exec.LookPath(n); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatalf("no Chromium found (looked for %s): install it (Debian: apt-get install chromium; .ci/run does)", strings.Join(execNames, ", "))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		// Loopback only: names other than localhost do not resolve, and
		// anything not on loopback goes to a proxy nobody listens on.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]"),
		chromedp.Flag("proxy-server", "http://127.0.0.1:9"),
		chromedp.Flag("proxy-bypass-list", "127.0.0.1;localhost;[::1]"),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	return ctx
}

// Do runs steps with a Step deadline.
func Do(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	sctx, cancel := context.WithTimeout(ctx, Step)
	defer cancel()
	return chromedp.Do(sctx, steps...)
}

// Run runs one action with a Step deadline and returns its value.
func Run[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	sctx, cancel := context.WithTimeout(ctx, Step)
	defer cancel()
	return chromedp.Run(sctx, a)
}

// AcceptDialogs answers every confirm() of the tab with OK, until ctx ends.
func AcceptDialogs(ctx context.Context) {
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
}

// Screenshot writes the page at width CSS pixels to dir/name.png: the whole
// page on a desktop width, the first screen (844 px high, as a phone's) on
// a width under 600.
func Screenshot(ctx context.Context, width int64, dir, name string) error {
	shot := chromedp.FullScreenshot(100)
	height := int64(900)
	if width < 600 {
		shot, height = chromedp.CaptureScreenshot(), 844
	}
	if err := Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		return err
	}
	png, err := Run(ctx, shot)
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// ReadQR screenshots the first element matching the CSS selector and
// decodes the QR code in the picture.
//
// A screenshot taken while the page still lays itself out (a busy machine
// renders late) can cut the code; it is taken again, up to three times.
func ReadQR(ctx context.Context, selector string) (string, error) {
	var err error
	for range 3 {
		var png []byte
		if png, err = Run(ctx, chromedp.Screenshot(chromedp.CSS(selector), chromedp.NodeVisible)); err != nil {
			return "", fmt.Errorf("screenshot %s: %w", selector, err)
		}
		var text string
		if text, err = DecodeQR(png); err == nil {
			return text, nil
		}
	}
	return "", err
}

// DecodeQR reads the QR code in a PNG picture.
func DecodeQR(png []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return "", fmt.Errorf("decode picture: %w", err)
	}
	// A white margin around the picture: a screenshot of the element
	// alone may end at the code's edge, and readers look for the quiet
	// zone around its finder patterns.
	const margin = 24
	b := img.Bounds()
	framed := image.NewRGBA(image.Rect(0, 0, b.Dx()+2*margin, b.Dy()+2*margin))
	draw.Draw(framed, framed.Bounds(), image.White, image.Point{}, draw.Src)
	draw.Draw(framed, image.Rect(margin, margin, margin+b.Dx(), margin+b.Dy()), img, b.Min, draw.Over)
	bmp, err := gozxing.NewBinaryBitmapFromImage(framed)
	if err != nil {
		return "", fmt.Errorf("binarize picture: %w", err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		return "", fmt.Errorf("read QR code: %w", err)
	}
	return res.GetText(), nil
}

//go:embed testdata/axe-core/axe.min.js
var axeSource string

// Violation is one accessibility rule an axe-core run found broken.
type Violation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

func (v Violation) String() string {
	var where []string
	for _, n := range v.Nodes {
		where = append(where, fmt.Sprint(n.Target...))
	}
	return fmt.Sprintf("%s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(where, ", "))
}

// Axe runs axe-core (WCAG 2 A and AA rules and best practices) on the
// tab's page and returns its violations.
func Axe(ctx context.Context) ([]Violation, error) {
	if _, err := Run(ctx, chromedp.Evaluate[chromedp.Void](axeSource)); err != nil {
		return nil, fmt.Errorf("inject axe-core: %w", err)
	}
	return Run(ctx, chromedp.Evaluate[[]Violation](
		`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations)`, chromedp.EvalAwaitPromise))
}

// Serious returns the violations of serious or critical impact.
func Serious(vs []Violation) []Violation {
	var out []Violation
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			out = append(out, v)
		}
	}
	return out
}
