// Package console is hufu's operator console: server-rendered HTML pages (html/template,
// Chinese, legible on a 1366×768 screen) with one small embedded script, served under
// /console/ on the admin listener (admin.Options.Console) and only over its TLS. Nothing is
// fetched from elsewhere: templates, style sheet and script are embedded in the binary.
//
// # Sign-in and sessions
//
// An operator signs in with an admin token (admin.tokens or one made online): the token is
// checked by the admin surface (admin.ConsoleHost), and a failed sign-in counts as a
// request without a valid token there (audited, counted, rate-limited per source). A
// metrics_reader token cannot sign in. A session is held server-side, keyed by the SHA-256
// of a random cookie value; the cookie (__Host-hufu-console) is HttpOnly, Secure,
// SameSite=Strict, Path=/. A session ends at sign-out, after Options.IdleTimeout without a
// request, after Options.SessionTTL in any case, and at once when its token is revoked or
// expires (the session keeps the token's hash and re-checks it on every request).
//
// Every POST carries the session's CSRF token (a form field, compared in constant time);
// the sign-in form carries one bound to a short-lived cookie. Every answer has a strict
// Content-Security-Policy (default-src 'self', no inline script or style, frame-ancestors
// 'none'), X-Frame-Options DENY and Cache-Control no-store.
//
// # Screens and roles
//
//	screen                        roles
//	首页 home (health, metrics)     operator, auditor, security_officer
//	证书审核 review desk            operator
//	对公打款 reconciliation         operator
//	线下付款 offline payment desk   operator
//	售后 after-sales desk           operator
//	发票 invoicing desk             operator
//	用户反馈 support desk           operator
//	开标 openings                   operator
//	审计日志 audit log              auditor, security_officer
//	系统客户端与令牌 access          operator (system clients), security_officer (+ tokens)
//
// A screen a role may not use is not linked and is refused (403, audited as denied).
//
// # Actions go through the desks
//
// The console holds no second path to the appliance's state: the desks' actions (review,
// reconciliation, offline payments, after-sales, invoicing, support) are calls of the same
// hufuv1.*ServiceServer the gRPC server serves to the desk system clients, with an
// authn.Caller whose Admin is the signed-in operator (a desk caller: authn.Caller.AtDesk), so
// each is checked and audited by the desk itself, under "admin:<name>". A desk has no call
// for one item, so an item's page finds it in the desk's own listing. Sign-in, sign-out, audit browsing,
// export and verification are audited by the console through the admin surface.
package console
