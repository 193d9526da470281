package console

import (
	"net/http"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/store"
)

// Who may reach the appliance: the system clients (operators and security officers, as
// GET /system-clients) and the admin tokens (security officers, as GET /tokens). Read
// only: granting and withdrawing access stay with hufu admin, where a desk grant or a
// security officer's token needs the second officer's approval.

type accessData struct {
	Clients []admin.SystemClient
	Tokens  []admin.TokenInfo
	// ShowTokens: the security officer's view.
	ShowTokens bool
}

var officers = []admin.Role{admin.SecurityOfficer}

func (c *Console) access(w http.ResponseWriter, r *http.Request, s *session) {
	d := accessData{ShowTokens: s.may(officers)}
	actions := []string{"admin.system_clients.list"}
	if d.ShowTokens {
		actions = append(actions, "admin.tokens.list")
	}
	for _, a := range actions {
		if err := c.opts.Host.Audit(r, s.who, a, store.OutcomeOK, map[string]string{"via": "console"}); err != nil {
			c.render(w, r, http.StatusServiceUnavailable, "error", s, pageData{Title: "系统客户端与令牌", Message: "审计日志无法写入，拒绝服务。"})
			return
		}
	}
	var err error
	if d.Clients, err = c.opts.Host.SystemClients(r.Context()); err == nil && d.ShowTokens {
		d.Tokens, err = c.opts.Host.Tokens(r.Context())
	}
	if err != nil {
		c.opts.Log.Error("console: listing access", "err", err)
		c.render(w, r, http.StatusInternalServerError, "error", s, pageData{Title: "系统客户端与令牌", Message: "读取失败，详见守护进程日志。"})
		return
	}
	c.render(w, r, http.StatusOK, "access", s, pageData{Title: "系统客户端与令牌", Data: d})
}
