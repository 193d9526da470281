package config

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Invoices configures invoicing (发票管理, seed manual §1.8.6; daemon/commerce/invoices).
// Every key may be left out: the zero value is the built-in policy (InvoicesEffective).
type Invoices struct {
	// HelpText is the invoicing help (开票帮助) shown on the phone, at most 10000
	// characters.
	HelpText string `yaml:"help_text"`
	// Types are the invoice types offered, of InvoiceTypes; empty: all of them.
	Types []string `yaml:"types"`
	// Categories files order kinds (InvoiceOrderKinds) under invoice categories
	// (InvoiceCategories), each kind at most once. Empty: DefaultInvoiceCategories. An order
	// kind that is not filed cannot be invoiced.
	Categories []InvoiceCategoryRule `yaml:"categories"`
	// MaxOrdersPerInvoice bounds the orders of one invoice (default 50, at most 200).
	MaxOrdersPerInvoice int `yaml:"max_orders_per_invoice"`
	// MaxTitlesPerUser bounds a user's saved titles (default 20, at most 100).
	MaxTitlesPerUser int `yaml:"max_titles_per_user"`
	// MaxDocumentBytes bounds an issued invoice's document (default 5 MiB, at most 16 MiB).
	MaxDocumentBytes int `yaml:"max_document_bytes"`
}

// InvoiceCategoryRule files one order kind under one category.
type InvoiceCategoryRule struct {
	OrderKind string `yaml:"order_kind"`
	Category  string `yaml:"category"`
}

// InvoiceTypes are the invoice types hufu knows: a person's ordinary invoice, an
// enterprise's ordinary invoice and an enterprise's special VAT invoice (增值税专用发票).
var InvoiceTypes = []string{"personal_ordinary", "enterprise_ordinary", "enterprise_special_vat"}

// InvoiceCategories are the order categories of the invoicing page: CA证书, 信息服务, 平台服务.
var InvoiceCategories = []string{"ca_certificate", "information_service", "platform_service"}

// InvoiceOrderKinds are the order kinds (certs.OrderKindName) that can be filed under a
// category.
var InvoiceOrderKinds = []string{"new", "renewal", "upgrade", "enterprise_claim", "enterprise_verification"}

// DefaultInvoiceCategories: certificate orders are CA证书; an enterprise verification by
// corporate transfer (对公打款认证) is 信息服务; nothing is 平台服务 yet (mutual-recognition
// services will be).
var DefaultInvoiceCategories = []InvoiceCategoryRule{
	{"new", "ca_certificate"}, {"renewal", "ca_certificate"}, {"upgrade", "ca_certificate"}, {"enterprise_claim", "ca_certificate"},
	{"enterprise_verification", "information_service"},
}

// developmentInvoiceHelp is the help text of a development appliance.
const developmentInvoiceHelp = `1. 哪些订单可以开票？已完成支付且未退款的订单，每个订单只能开票一次。
2. 增值税专用发票需要企业抬头，并填写完整的地址、电话、开户行和账号。
3. 开票申请提交后由开票窗口处理，开具后可在开票历史中下载电子发票（PDF或OFD）。
4. 申请被驳回后，订单可以重新开票。`

// InvoicesEffective is c with every unset key at its built-in value.
func (c Invoices) InvoicesEffective() Invoices {
	if len(c.Types) == 0 {
		c.Types = slices.Clone(InvoiceTypes)
	}
	if len(c.Categories) == 0 {
		c.Categories = slices.Clone(DefaultInvoiceCategories)
	}
	if c.MaxOrdersPerInvoice == 0 {
		c.MaxOrdersPerInvoice = 50
	}
	if c.MaxTitlesPerUser == 0 {
		c.MaxTitlesPerUser = 20
	}
	if c.MaxDocumentBytes == 0 {
		c.MaxDocumentBytes = 5 << 20
	}
	return c
}

// fillDevelopment gives a development appliance a help text.
func (c *Invoices) fillDevelopment() {
	if c.HelpText == "" {
		c.HelpText = developmentInvoiceHelp
	}
}

func (c *Config) validateInvoices(bad func(path, format string, args ...any)) {
	iv := c.Invoices
	if n := utf8.RuneCountInString(iv.HelpText); n > 10000 || !utf8.ValidString(iv.HelpText) {
		bad("invoices.help_text", "at most 10000 characters of UTF-8")
	}
	seen := map[string]bool{}
	for i, t := range iv.Types {
		if !slices.Contains(InvoiceTypes, t) || seen[t] {
			bad(fmt.Sprintf("invoices.types[%d]", i), "%q: one of %v, each once", t, InvoiceTypes)
		}
		seen[t] = true
	}
	filed := map[string]bool{}
	for i, r := range iv.Categories {
		path := fmt.Sprintf("invoices.categories[%d]", i)
		if !slices.Contains(InvoiceOrderKinds, r.OrderKind) || filed[r.OrderKind] {
			bad(path+".order_kind", "%q: one of %v, each once", r.OrderKind, InvoiceOrderKinds)
		}
		filed[r.OrderKind] = true
		if !slices.Contains(InvoiceCategories, r.Category) {
			bad(path+".category", "%q: one of %v", r.Category, InvoiceCategories)
		}
	}
	for _, b := range []struct {
		path    string
		v, most int
	}{{"invoices.max_orders_per_invoice", iv.MaxOrdersPerInvoice, 200}, {"invoices.max_titles_per_user", iv.MaxTitlesPerUser, 100},
		{"invoices.max_document_bytes", iv.MaxDocumentBytes, 16 << 20}} {
		if b.v < 0 || b.v > b.most {
			bad(b.path, "%d: 0 (the default) to %d", b.v, b.most)
		}
	}
	if eff := iv.InvoicesEffective().MaxDocumentBytes; eff+(64<<10) > c.GRPC.MaxRecvBytes {
		bad("invoices.max_document_bytes", "%d does not fit in a call with grpc.max_recv_bytes %d", eff, c.GRPC.MaxRecvBytes)
	}
	if iv.MaxDocumentBytes > 0 && iv.MaxDocumentBytes < 1024 {
		bad("invoices.max_document_bytes", "%d: at least 1024", iv.MaxDocumentBytes)
	}
}
