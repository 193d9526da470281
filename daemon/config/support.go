package config

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Support is the help and customer-service content the phone shows (seed manual
// §1.8.7–§1.8.9) and the bank-card policy (§1.8.5): help articles (使用帮助), the FAQ that
// 智能客服 searches, and the consultation number (电话咨询). Ids are unique across articles
// and FAQ entries. Production starts with none: the trading centre writes its own.
type Support struct {
	// Phone is the customer-service number, e.g. 400-800-1234; Hours when it is answered.
	Phone string `yaml:"phone"`
	Hours string `yaml:"hours"`
	// Articles are the help articles, in display order.
	Articles []HelpArticle `yaml:"articles"`
	// FAQ is the knowledge base of 智能客服.
	FAQ []FAQEntry `yaml:"faq"`
	// MaxBankCards bounds the cards one account binds (default 10, at most 20).
	MaxBankCards int `yaml:"max_bank_cards"`
}

// HelpArticle is one help article (使用帮助).
type HelpArticle struct {
	ID       string `yaml:"id"`
	Title    string `yaml:"title"`
	Category string `yaml:"category"`
	Body     string `yaml:"body"`
}

// FAQEntry is one question of the FAQ, with the keywords people may use for it.
type FAQEntry struct {
	ID       string   `yaml:"id"`
	Question string   `yaml:"question"`
	Answer   string   `yaml:"answer"`
	Keywords []string `yaml:"keywords"`
}

var (
	helpIDRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	supportPhoneRE = regexp.MustCompile(`^[0-9][0-9 -]{4,19}$`)
)

// Bounds of the support content: it is served whole to phones and searched per query.
const (
	maxHelpEntries    = 500
	maxHelpTitleRunes = 100
	maxHelpBodyRunes  = 10000
	maxHelpKeywords   = 20
)

func (c *Config) validateSupport(bad func(path, format string, args ...any)) {
	s := c.Support
	if s.Phone != "" && !supportPhoneRE.MatchString(s.Phone) {
		bad("support.phone", "%q: want 5 to 20 digits, spaces or dashes, like 400-800-1234", s.Phone)
	}
	if utf8.RuneCountInString(s.Hours) > 100 {
		bad("support.hours", "at most 100 characters")
	}
	if s.MaxBankCards < 0 || s.MaxBankCards > 20 {
		bad("support.max_bank_cards", "%d: want 1..20 (0 for the default, 10)", s.MaxBankCards)
	}
	if len(s.Articles)+len(s.FAQ) > maxHelpEntries {
		bad("support", "%d articles and FAQ entries: at most %d", len(s.Articles)+len(s.FAQ), maxHelpEntries)
	}
	ids := map[string]bool{}
	id := func(path, v string) {
		if !helpIDRE.MatchString(v) {
			bad(path, "%q: want 1..64 of [a-z0-9-]", v)
		} else if ids[v] {
			bad(path, "%q is used twice (ids are unique across articles and faq)", v)
		}
		ids[v] = true
	}
	text := func(path, v string, max int) {
		if n := utf8.RuneCountInString(v); strings.TrimSpace(v) == "" || n > max || !utf8.ValidString(v) {
			bad(path, "must be 1..%d characters", max)
		}
	}
	for i, a := range s.Articles {
		p := fmt.Sprintf("support.articles[%d]", i)
		id(p+".id", a.ID)
		text(p+".title", a.Title, maxHelpTitleRunes)
		text(p+".category", a.Category, 30)
		text(p+".body", a.Body, maxHelpBodyRunes)
	}
	for i, f := range s.FAQ {
		p := fmt.Sprintf("support.faq[%d]", i)
		id(p+".id", f.ID)
		text(p+".question", f.Question, maxHelpTitleRunes)
		text(p+".answer", f.Answer, maxHelpBodyRunes)
		if len(f.Keywords) > maxHelpKeywords {
			bad(p+".keywords", "at most %d", maxHelpKeywords)
		}
		for j, k := range f.Keywords {
			text(fmt.Sprintf("%s.keywords[%d]", p, j), k, 30)
		}
	}
}

// fillDevelopment gives a development appliance help content in the manual's words, a
// consultation number and hours, unless the configuration has its own.
func (s *Support) fillDevelopment() {
	if s.Phone == "" {
		s.Phone, s.Hours = "400-800-1234", "工作日 9:00-17:30"
	}
	if len(s.Articles) == 0 {
		s.Articles = []HelpArticle{
			{ID: "register", Category: "账号", Title: "如何注册和登录",
				Body: "打开APP，输入手机号码并获取短信验证码即可注册并登录；已设置登录密码的用户也可以使用手机号和密码登录。首次登录后请选择所在的交易平台。"},
			{ID: "realname", Category: "账号", Title: "如何进行实名认证",
				Body: "在【我的】页面点击【实名认证】，可选择CFCA认证（姓名和身份证号）、支付宝刷脸认证或银行卡四要素认证中的一种完成实名认证。"},
			{ID: "apply-cert", Category: "证书", Title: "如何申请个人数字证书",
				Body: "完成实名认证后，在首页点击【证书申请】，选择CA机构、证书有效期和适用平台，设置证书密码并签署授权书，提交后支付订单，审核通过即可下载证书。"},
			{ID: "bank-card", Category: "我的", Title: "如何添加和解绑银行卡",
				Body: "点击【银行卡管理】，选择【添加银行卡】，输入本人的银行卡号和银行预留手机号，点击【绑定】即可。在银行卡列表中选择一张卡可进行解绑。"},
			{ID: "feedback", Category: "我的", Title: "如何提交意见反馈",
				Body: "点击【我的反馈】，可查看已反馈的内容和客服的回复，或进行新的意见反馈，可附上相关订单和图片。"},
		}
	}
	if len(s.FAQ) == 0 {
		s.FAQ = []FAQEntry{
			{ID: "faq-forgot-pin", Question: "忘记证书密码怎么办？", Keywords: []string{"证书密码", "忘记密码", "重置"},
				Answer: "在【设置】中选择【忘记证书密码】，通过短信验证码验证后即可重新设置证书密码。"},
			{ID: "faq-scan-sign", Question: "如何扫码签章？", Keywords: []string{"扫码", "签章", "二维码"},
				Answer: "在交易平台页面出现签章二维码后，打开APP点击首页的【扫一扫】，选择证书并输入证书密码即可完成签章。"},
			{ID: "faq-renew", Question: "证书快到期了如何续期？", Keywords: []string{"续期", "到期", "证书更新"},
				Answer: "在【我的证书】中选择即将到期的证书，点击【续期】并支付订单，续期后的有效期从原到期日起算。"},
			{ID: "faq-bank-card", Question: "为什么银行卡绑定失败？", Keywords: []string{"银行卡", "绑卡", "绑定失败"},
				Answer: "银行卡必须为实名认证本人的卡，银行预留手机号须与银行登记的一致；请检查卡号和预留手机号后重试。"},
			{ID: "faq-invoice", Question: "如何开具发票？", Keywords: []string{"发票", "开票"},
				Answer: "点击【发票管理】，选择要开具的发票类型，勾选需要开票的订单后填写发票抬头，点击【确认】即可。"},
			{ID: "faq-mutual", Question: "已有证书不适用当前平台怎么办？", Keywords: []string{"互认", "平台", "不适用"},
				Answer: "如证书适用于全国CA互认体系，扫码时选择【CA证书互认共享服务】，开通按次账户或按日账户后即可使用。"},
		}
	}
}
