// Package ocsp is the OCSP responder (RFC 6960) of an embedded issuing CA: relying parties
// ask it whether a certificate is good, revoked or unknown, and it answers with a response
// signed in SM2. Go's x/crypto/ocsp does not speak SM2, so the wire format is written here.
//
// # Requests
//
// ParseRequest takes strict DER (RFC 6960 §4.1.1): no trailing bytes at any level, version
// v1, 1..10 certificates, CertID hashes SHA-1 (what OpenSSL and most clients send), SHA-256
// or SM3, positive serials of at most 20 octets, a nonce (id-pkix-ocsp-nonce) that is an
// OCTET STRING of 1..32 octets (RFC 8954), at most 8 KiB. A requestor name and a request
// signature are accepted and ignored: the answers are public information, so who asks
// changes nothing, and verifying a signature would only cost the responder work an anonymous
// caller chooses. Unknown non-critical extensions are ignored, critical ones refused.
//
// # Responses
//
// A BasicOCSPResponse per request, signed by the issuing CA's own key (no delegated
// responder certificate to issue, rotate and revoke) with SM2-with-SM3 (1.2.156.10197.1.501)
// and the default SM2 ID 1234567812345678; the responder is named by key (the SHA-1 of the
// issuing CA's subjectPublicKey bits). With Config.IncludeIssuer the issuing CA's
// certificate is in certs: a client that made the CertID has it, but OpenSSL looks for the
// signer only among the response's certificates and -verify_other, so without it
// `openssl ocsp -issuer … -CAfile root.pem` fails with "signer certificate not found".
//
// Each certificate is
//
//   - good: issued by this CA and not revoked (expiry is the relying party's to check);
//   - revoked, with the revocation time and RFC 5280 reason (left out when unspecified);
//   - unknown: a serial this CA never issued. (RFC 6960 §2.2 lets a responder say
//     "revoked" with certificateHold for such a serial; hufu keeps the plain meaning.)
//
// thisUpdate is when the answer was signed and nextUpdate thisUpdate + Config.Validity,
// which the daemon sets to the CRL's validity. The nonce of a request is echoed. A request
// hufu cannot read gets malformedRequest; one naming a certificate of another issuer (its
// issuerNameHash and issuerKeyHash, under the request's hash, are not this CA's) gets
// unauthorized; a failure of the store or the HSM gets internalError, and a responder out
// of signing capacity tryLater. No path panics on input.
//
// # Caching and the HSM
//
// Signing unwraps the issuing key through the HSM, so it is what a flood of requests could
// exhaust. A response to a request for one certificate without a nonce is cached by the
// CertID as received and reused until half of its validity has passed. The status is
// read from the Source on every request, even a cached one (a store read, no HSM), and a
// cached response is reused only if it says the same: a revocation is visible in the next
// answer, with nothing for the daemon to invalidate. Responses with a nonce, or for
// several certificates, are signed fresh. At most Config.MaxSigning signatures are made at
// once; a request that finds no free slot within Config.SigningWait gets tryLater, so a
// flood of nonced requests costs the HSM at most MaxSigning concurrent operations and the
// cached answers keep flowing.
//
// # Audit and metrics
//
// An OCSP answer is a read of public information: it changes no state, so it writes no
// audit record (the revocation it reports was audited when it happened), and an audit
// record per answer would let anyone on the network grow the audit log at will. Answers are
// counted instead, by CA and status (hufu_ocsp_responses_total), with cache hits
// (hufu_ocsp_cache_hits_total) and signing latency (hufu_ocsp_signing_duration_seconds);
// never with a serial.
//
// # HTTP
//
// Handler serves POST (application/ocsp-request) and GET /<base64 of the DER>, in the
// standard or URL alphabet, padded or not, URL-escaped (RFC 6960 appendix A), relative to
// where it is mounted. ByCA puts the responders of all embedded CAs behind the PKI
// listener's routes POST /ocsp/{ca} and GET /ocsp/{ca}/{request...}.
package ocsp
