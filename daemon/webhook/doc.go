// Package webhook is hufu's production provider: one signed HTTP client that a trading
// centre points at its own SMS gateway, real-name verification service, login token service
// and payment service. A Provider implements accounts.SMSSender, accounts.WeChat,
// accounts.Carrier, identity.Verifier and certs.Payments; a deployment makes one per gateway
// (providers.sms, providers.identity, providers.login, providers.payment).
//
// The wire contract, which the integrator implements, is docs/providers.md. In short: each
// operation is a JSON POST to <url>/<operation>, signed with HMAC-SM3 under a key shared
// through a file, over a string that binds the operation, a timestamp, a fresh nonce, a
// request id and the body (Signed.StringToSign). The gateway's answer is signed the same
// way and bound to the request's nonce, so a spoofed or misconfigured gateway cannot confirm
// an identity or a payment, and an old answer cannot be replayed. Timestamps outside
// ±max_clock_skew are refused.
//
// Every call is bounded: each attempt by timeout, the retries by max_attempts with jittered
// exponential backoff, all by the caller's context. Only failures retry (network, timeouts,
// 5xx, 408, 429, result "unavailable"); every attempt of a call carries the same request id,
// with which the gateway must answer a repeat as it answered the first, so a retried charge
// or SMS happens once. A circuit breaker per provider fails calls fast after
// circuit.failure_threshold consecutive failed attempts, for circuit.cooldown, then lets one
// probe through.
//
// Nothing personal (phone numbers, names, ID and card numbers, codes, tokens) is logged,
// put in an error or used as a metric label; errors name the provider, the operation, the
// request id and what failed.
//
// One operation goes the other way: the payment service tells hufu that a payment completed
// (payment.notify: an asynchronous payment, or a charge whose answer hufu never received).
// Provider.Inbound verifies such a request exactly as the contract has the gateway verify
// hufu's (signature first, then timestamp and nonce) and signs the answer; what the request
// means is the payment service's business (daemon/commerce/payments).
package webhook
