// Package bidopening defines the wire formats of a bid opening (开标) that the appliance, the
// bidder's phone and an auditor share: the bidder's consent statement, and the appliance's
// signed opening report with its offline verifier. It is pure: no I/O, no clock. The
// appliance builds statements and reports with it; the phone parses the statement it is
// asked to sign; an auditor runs Verify on a report with the appliance's audit public key.
//
// # Field rules
//
// These rules apply wherever a field of the kind appears, in the statement and in the report.
//
//	id      1 to 64 bytes of A-Z a-z 0-9 . _ -           (openings, sessions, envelopes)
//	serial  1 to 64 hex digits, either case               (certificate serials)
//	        kept exactly as registered; compared as strings, except against a certificate,
//	        where it is read as a hexadecimal number
//	text    valid UTF-8, 1 to 256 characters (64 for a project code), none of U+0000-U+001F,
//	        U+007F-U+009F, U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, U+2028,
//	        U+2029 (controls, line separators and bidirectional formatting, which would let
//	        a displayed text read differently from its bytes), and neither the first nor the
//	        last character Unicode White_Space
//	token   1 to 64 bytes of a-z 0-9 _ . -              (outcomes and reasons)
//	time    RFC 3339 in UTC exactly as Go's time.RFC3339Nano writes it: "Z", the fraction
//	        of a second with no trailing zeros and no fraction for whole seconds
//	        (2026-12-01T10:00:00Z, 2026-12-01T10:00:00.1234Z); years 0001-9999, not the
//	        zero time 0001-01-01T00:00:00Z
//	hex32   64 lower-case hex digits (a SHA-256 value)
//
// # Consent statement
//
// A bidder consents to the release of their envelopes by signing, with the key of their
// certificate, a UTF-8 text of at least seven lines joined by "\n", with no trailing newline
// (Statement.Marshal, ParseStatement):
//
//	hufu/opening/v1 consent
//	opening=<id>
//	project=<text, at most 64 characters: the project code>
//	serial=<serial of the signer's certificate>
//	session=<id of the scan session>
//	time=<time>
//	envelope=<id> ciphertext_sha256=<hex32> t1_sha256=<hex32>
//	envelope=...
//
// The first six lines are exactly these keys in this order, each followed by "=" and the
// value, with nothing else on the line. There is at least one envelope line, each exactly
// three words separated by one space, and the envelope ids are strictly increasing in
// bytewise order, so a consent has exactly one text. ciphertext_sha256 is the SHA-256 of the
// envelope's ciphertext exactly as the bid-opening system registered it; t1_sha256 is
// T1Hash(T1), the SHA-256 of the 65-byte uncompressed point T1 = d1⁻¹·C1 that the phone
// sends for the envelope at consent. A statement is at most MaxStatementSize bytes.
//
// The signature is an ordinary SM2 signature (r, s) with e = SM3(Z_A ‖ text), Z_A over the
// certificate's public key and the default signer ID "1234567812345678"
// (cosign.Digest(pub, nil, text)). The phone shows the statement before signing it; the
// field rules keep what it shows equal to what it signs. The appliance accepts a consent
// only inside the opening's window, with a statement whose time also lies in it.
//
// # Opening report
//
// The report (开标记录) is JSON Lines: one JSON object per line, each line ending in "\n"
// (the last one too), at most 1 MiB per line and MaxReportSize in all. The appliance makes
// it when it closes an opening (Report.Sign); an auditor checks it offline (Verify). Its
// lines, in this order, each object's fields in exactly this order:
//
//	{"type":"opening","id":<id>,"system":<text>,"project_code":<text ≤ 64>,"project_name":<text>,
//	 "platform":<text>,"window_start":<time>,"window_end":<time>,"sealed_at":<time>,
//	 "closed_at":<time>,"envelopes":N,"manifest_sha256":<hex32>}                   exactly one
//	{"type":"envelope","id":<id>,"serial":<serial>,"ciphertext_sha256":<hex32>,
//	 "registered_at":<time>}                                    N, strictly increasing by id
//	{"type":"consent","session":<id>,"serial":<serial>,"delegated":<bool>,
//	 "accepted_at":<time>,"statement":<the statement text>,"signature":<base64 of r ‖ s,
//	 64 bytes>,"certificate":<base64 of the signer's DER X.509 certificate>}
//	                                  zero or more, strictly increasing by (accepted_at, session)
//	{"type":"release","envelope":<id>,"at":<time>,"outcome":"ok" or <token>,
//	 "via":"release" or "phone"}                      zero or more, non-decreasing by at
//	{"type":"attempt","at":<time>,"via":"decrypt", "release" or "consent",
//	 "envelope":<id> or "","reason":<token>}          zero or more, non-decreasing by at
//	{"type":"audit","seq":<uint64 ≥ 1>,"head":<hex32>}                             exactly one
//	{"type":"signature","key_id":<hex32>,"signature":<base64 of DER ECDSA>}   exactly one, last
//
// A consent is one the appliance accepted. A release is one computation of an envelope's key
// by the appliance: via "release" for a bulk release by the bid-opening system from the
// T1 of a consent, via "phone" for the bidder's own two-party decryption; outcome is "ok" or
// why it failed (such as "c3_mismatch"). An attempt is a request the appliance refused (too
// early, or for an envelope that is not the requester's); envelope is "" when the request
// named none. The audit line is the audit chain's last record at closing and the chain head
// after it (package store).
//
// Each line is byte for byte what Go's encoding/json writes for these fields with HTML
// escaping off (json.Encoder.SetEscapeHTML(false)): no white space, every field present,
// integers in decimal without sign or leading zeros, and in strings only " and \ escaped
// as \" and \\, the statement's line feeds as \n (no other control character is valid in
// any field), and everything else as itself, UTF-8. Base64 is standard, with padding.
//
// manifest_sha256 is ManifestSHA256: SHA-256 of
//
//	"hufu/opening/v1 manifest" ‖ 0x00 ‖ for each envelope in increasing id order:
//	    len32(id) ‖ id ‖ len32(serial) ‖ serial ‖ ciphertext_sha256 (32 bytes)
//
// where len32 is the byte length as a big-endian uint32. The appliance computes it when it
// seals the manifest; the report's envelope lines must hash to it.
//
// The signature line's key_id is SHA-256 of the PKIX DER encoding of the report key (the
// appliance's ECDSA P-256 audit key, PEM at GET /audit/public-key; store.KeyID), and its
// signature is ECDSA P-256, ASN.1 DER, over
//
//	SHA-256("hufu/opening/v1 report" ‖ 0x00 ‖ every byte of the file before the signature line)
//
// An ECDSA signature is not unique ((r, s) and (r, n−s) both verify, and signing is
// randomised), so two files that differ only in the signature line are the same report:
// identify a report by its body.
//
// # Verification
//
// Verify checks the signature line first and then every line in order, and stops at the
// first failure with a *VerifyError naming the line and a Reason. It checks that:
//
//   - the last line is the signature line, its key_id is the given key's id and the
//     signature verifies over the rest of the file;
//   - every line has the fields above and no others, each valid by its rule, and is exactly
//     what the writer produces for the values read from it (which rules out duplicate keys,
//     escapes, white space, non-canonical numbers, times, hex and base64); the lines are in
//     the order above;
//   - sealed_at ≤ window_start ≤ window_end and window_start ≤ closed_at; every envelope's
//     registered_at ≤ sealed_at;
//   - the header's N is the number of envelope lines and manifest_sha256 is their hash;
//   - for every consent: the certificate parses, its serial number equals the line's serial
//     read as a hexadecimal number, accepted_at lies in its validity, its key is SM2 and the
//     signature verifies on the statement; the statement parses, and its opening, project,
//     serial and session are the header's id, the header's project_code, the line's serial
//     and the line's session; every envelope it names is in the manifest with that serial
//     and the same ciphertext_sha256; its time lies in [window_start, window_end] and
//     accepted_at in [window_start, min(window_end, closed_at)]; no two consents share a
//     session;
//   - for every release: the envelope is in the manifest, at lies in [window_start,
//     closed_at], and a release via "release" has a consent naming the envelope accepted
//     no later than at;
//   - every attempt's at is no later than closed_at (attempts before the window are the
//     refused early ones).
//
// Verify does not check a certificate's own signature, chain or revocation: the report's
// signature attests which certificate each consent was accepted with, and an auditor who
// needs more checks Consent.Certificate against the CA. Sign runs the same checks before
// signing, so the appliance never signs a report that an auditor would reject.
package bidopening
