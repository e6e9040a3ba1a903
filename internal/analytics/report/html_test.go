package report_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/checkout-backend/checkout/internal/analytics/report"
)

// chromium is Debian's headless browser; a missing one skips (with one line) outside
// CI and fails under CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("skipping: no chromium (apt-get install chromium, or scripts/services.sh --need-tools)")
	}
	t.Fatal("chromium is not installed (scripts/services.sh --need-tools installs it)")
	return ""
}

// checkPageInChromium opens the report page in headless Chromium and checks that it
// loads without a console error or exception and shows every chart with its bars.
func checkPageInChromium(t *testing.T, r report.Report) {
	t.Helper()
	bin := chromium(t)
	page := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.HTML(f, r); err != nil {
		t.Fatal(err)
	}
	f.Close()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelT()

	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				problems = append(problems, fmt.Sprintf("console.%s", e.Type))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(chromedp.CSS(`svg.chart`))); err != nil {
		t.Fatalf("chromium: open the page: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`(() => {
		const out = {charts: document.querySelectorAll('svg.chart').length};
		for (const svg of document.querySelectorAll('svg.chart')) {
			const box = svg.getBoundingClientRect();
			out[svg.dataset.chart] = box.width > 0 && box.height > 0 ? svg.querySelectorAll('rect.bar').length : -1;
		}
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("REPORT_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "report.png"), shot, 0o644)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors: %v", problems)
	}
	if title != "Checkout report" {
		t.Errorf("title %q", title)
	}
	want := map[string]int{
		"charts":            len(report.Charts),
		"orders-per-minute": len(r.OrdersPerMinute),
		"revenue":           len(r.Revenue),
		"payments":          1 + len(r.Payments.Reasons),
		"conversion":        2,
		"sell-out":          len(r.SellOut),
		"checkout-to-paid":  4,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %d (bars, or -1 when not shown), want %d; all: %v", k, counts[k], v, counts)
		}
	}
}
