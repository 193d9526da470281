package hufuv1

// ErrorDomain is the domain of the google.rpc.ErrorInfo a hufu error carries when a client
// must act on the kind of error rather than on its code alone.
const ErrorDomain = "hufu.v1"

// ReasonAccessTokenRejected (with codes.Unauthenticated) says the call's access token is
// expired, revoked or unknown: the one Unauthenticated answer a refresh of the session may
// cure. Other Unauthenticated answers (a wrong SMS code, an expired cosign ticket) come from
// the call itself; repeating it would use up another attempt.
const ReasonAccessTokenRejected = "ACCESS_TOKEN_REJECTED"

// ReasonRecognitionServiceRequired (with codes.FailedPrecondition) says the chosen
// certificate is not valid for the scan session's platform but belongs to the national
// mutual-recognition system (全国CA互认), and the person has no open service for that
// platform: the phone offers to open it (WalletService: buy a day pass or top up the
// per-use wallet) and the choice can then be made again. The message names the platform.
const ReasonRecognitionServiceRequired = "RECOGNITION_SERVICE_REQUIRED"

// ReasonAccountDeletionBlocked (with codes.FailedPrecondition) says an account cannot be
// deleted yet: the message names each unmet precondition; PreviewAccountDeletion lists them.
const ReasonAccountDeletionBlocked = "ACCOUNT_DELETION_BLOCKED"
