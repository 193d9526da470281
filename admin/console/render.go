package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// pageData is what every template gets; Data is the screen's own.
type pageData struct {
	Title   string
	Message string // an error or notice, shown above the content
	Notice  string
	CSRF    string
	Who     string
	Role    string
	Nav     []navItem
	Data    any
}

type navItem struct {
	Href, Label string
	Current     bool
}

var funcs = template.FuncMap{
	"yuan": yuan,
	"outcome": func(o hufuv1.StatementLineOutcome) string {
		if s, ok := lineOutcomes[o]; ok {
			return s
		}
		return o.String()
	},
	"paymentState":    func(x hufuv1.OfflinePaymentState) string { return label(paymentStates, x) },
	"afterSalesState": func(x hufuv1.AfterSalesState) string { return label(afterSalesStates, x) },
	"invoiceKind":     func(x hufuv1.InvoiceKind) string { return label(invoiceKinds, x) },
	"titleKind":       func(x hufuv1.InvoiceTitleKind) string { return label(titleKinds, x) },
	"feedbackState":   func(x hufuv1.FeedbackState) string { return label(feedbackStates, x) },
	"ts": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return "—"
		}
		return t.AsTime().Local().Format("2006-01-02 15:04:05")
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ptime": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"unixnano": func(n int64) string {
		if n == 0 {
			return "—"
		}
		return time.Unix(0, n).Local().Format("2006-01-02 15:04:05")
	},
}

// label is an enum's Chinese name, or its API name if it has none.
func label[E interface {
	comparable
	String() string
}](names map[E]string, x E) string {
	if s, ok := names[x]; ok {
		return s
	}
	return x.String()
}

// parseTemplates parses each page with the layout.
func (c *Console) parseTemplates() error {
	c.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// nav lists the screens s's role may use.
func (c *Console) nav(r *http.Request, s *session) []navItem {
	var out []navItem
	add := func(href, label string, ok bool) {
		if !ok {
			return
		}
		cur := r.URL.Path == href || (href != base && strings.HasPrefix(r.URL.Path, href))
		out = append(out, navItem{Href: href, Label: label, Current: cur})
	}
	add(base, "首页", s.may(anyone))
	add(base+"review", "证书审核", c.opts.Review != nil && s.may(desk))
	add(base+"reconcile", "对公打款", c.opts.Reconciliation != nil && s.may(desk))
	add(base+"payments", "线下付款", c.opts.Payments != nil && s.may(desk))
	add(base+"aftersales", "售后", c.opts.AfterSales != nil && s.may(desk))
	add(base+"invoices", "发票", c.opts.Invoices != nil && s.may(desk))
	add(base+"feedback", "用户反馈", c.opts.Support != nil && s.may(desk))
	add(base+"openings", "开标", c.opts.Openings != nil && s.may(desk))
	add(base+"audit", "审计日志", s.may(auditors))
	add(base+"access", "系统客户端与令牌", s.may(ops))
	return out
}

// render writes page name with the layout; s may be nil (sign-in).
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, s *session, d pageData) {
	if s != nil {
		d.CSRF, d.Who, d.Role, d.Nav = s.csrf, s.who.Name, roleName(s.who.Role), c.nav(r, s)
	}
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, d); err != nil {
		c.opts.Log.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// failed shows a desk's refusal: its message for the caller's mistakes, a generic one for
// an internal error (logged with the request's id, never shown).
func (c *Console) failed(w http.ResponseWriter, r *http.Request, s *session, title string, err error) {
	st := status.Convert(err)
	code, msg := http.StatusBadRequest, st.Message()
	switch st.Code() {
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		code = http.StatusConflict
	case codes.ResourceExhausted, codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.InvalidArgument, codes.OutOfRange:
	default:
		c.opts.Log.Error("console: desk call failed", "page", title, "err", err)
		code, msg = http.StatusInternalServerError, "内部错误，详见守护进程日志。"
	}
	c.render(w, r, code, "error", s, pageData{Title: title, Message: msg})
}
