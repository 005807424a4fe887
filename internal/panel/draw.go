package panel

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/burrow-vpn/burrow/internal/access"
)

// qrSVG draws s as a QR code in SVG, one path of dark modules with a quiet
// zone, crisp at any size. It is drawn here: nothing is fetched.
func qrSVG(s, label string) template.HTML {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return ""
	}
	q.DisableBorder = true
	bm := q.Bitmap()
	n := len(bm)
	const quiet = 4
	var path strings.Builder
	for y, row := range bm {
		for x := 0; x < len(row); x++ {
			if !row[x] {
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&path, "M%d %dh%dv1h-%dz", x+quiet, y+quiet, run, run)
			x += run - 1
		}
	}
	size := n + 2*quiet
	return template.HTML(fmt.Sprintf(`<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s" shape-rendering="crispEdges">`+
		`<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`,
		size, size, template.HTMLEscapeString(label), size, size, path.String()))
}

// trafficChart draws days of traffic from first as stacked bars (down
// below up), with the largest day's total on the axis and a title per bar.
func trafficChart(lang string, first time.Time, days int, rows []access.DayTraffic) template.HTML {
	byDay := map[string]access.Traffic{}
	for _, r := range rows {
		byDay[r.Day] = r.Traffic
	}
	var peak int64
	for _, t := range byDay {
		peak = max(peak, addSat(t.Up, t.Down))
	}
	const w, h, left, bottom, top = 640, 200, 64, 24, 12
	bw := float64(w-left) / float64(days)
	plot := float64(h - bottom - top)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title">`, w, h)
	fmt.Fprintf(&b, `<title id="chart-title">%s</title>`, template.HTMLEscapeString(tr(lang, "user.chart")))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">%s</text>`, left-6, top+10, template.HTMLEscapeString(formatSize(lang, peak)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">0</text>`, left-6, h-bottom)
	for i := range days {
		day := first.AddDate(0, 0, i)
		t := byDay[day.Format(time.DateOnly)]
		x := float64(left) + float64(i)*bw
		scale := func(n int64) float64 {
			if peak == 0 {
				return 0
			}
			return plot * float64(n) / float64(peak)
		}
		hd, hu := scale(t.Down), scale(t.Up)
		y := float64(h - bottom)
		title := fmt.Sprintf("%s: ↓ %s, ↑ %s", formatDate(lang, day), formatSize(lang, t.Down), formatSize(lang, t.Up))
		fmt.Fprintf(&b, `<g><title>%s</title><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="down"/>`,
			template.HTMLEscapeString(title), x+1, y-hd, bw-2, hd)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="up"/></g>`, x+1, y-hd-hu, bw-2, hu)
		if (days-1-i)%7 == 0 {
			lx, anchor := x+bw/2, "middle"
			if i == days-1 { // the last label ends at the edge
				lx, anchor = x+bw, "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="lbl" text-anchor="%s">%s</text>`, lx, h-6, anchor,
				template.HTMLEscapeString(shortDate(lang, day)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// shortDate is a day and month: "7 Dec", "7 дек.".
func shortDate(lang string, t time.Time) string {
	if lang == "ru" {
		return fmt.Sprintf("%d %s", t.Day(), monthsRU[t.Month()-1])
	}
	return t.Format("2 Jan")
}
