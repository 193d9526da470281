package hufuv1

// ErrorDomain is the domain of the google.rpc.ErrorInfo a hufu error carries when a client
// must act on the kind of error rather than on its code alone.
const ErrorDomain = "hufu.v1"

// ReasonAccessTokenRejected (with codes.Unauthenticated) says the call's access token is
// expired, revoked or unknown: the one Unauthenticated answer a refresh of the session may
// cure. Other Unauthenticated answers (a wrong SMS code, an expired cosign ticket) come from
// the call itself; repeating it would use up another attempt.
const ReasonAccessTokenRejected = "ACCESS_TOKEN_REJECTED"
