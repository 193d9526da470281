package payments

// ClearingAccount is the ledger account that holds the money of a payment taken with
// method: clearing:<provider>. Other domains that charge through this service (the mutual-
// recognition wallet) book their payments against it.
func ClearingAccount(method string) string { return "clearing:" + providerName(method) }
