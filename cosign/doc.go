// Package cosign is the two-party SM2 arithmetic of hufu: both halves of key generation,
// signing, decryption, share refresh and delegated pairs for a key split between a phone and
// the appliance, and the validation of every message they exchange. It is pure: no I/O, no
// clock, and all randomness comes from an io.Reader the caller passes. The daemon stores and
// transports what this package computes; the client SDK plays the phone's half.
//
// # Notation
//
// The curve is the SM2 recommended curve sm2p256v1 (GB/T 32918.5) with generator G, prime
// field p and prime group order n. "k ←$" means a uniform draw from [1, n-1] (rejection
// sampling from 32 random bytes). All arithmetic on scalars is mod n.
//
// # The split key
//
// The phone holds d1 and the server d2, both in [1, n-1], and the joint private key d
// satisfies
//
//	(1 + d)⁻¹ = d1·d2 mod n,   so   P = d·G = (d1·d2)⁻¹·G − G.
//
// Neither share reveals anything about d without the other. Signatures are ordinary SM2
// signatures under P (GB/T 32918.2, e = SM3(Z_A ‖ M), signer ID "1234567812345678" unless
// given) and ciphertexts are ordinary SM2 ciphertexts to P (GB/T 32918.4), so every standard
// implementation verifies and encrypts without knowing the key is split. Each side also keeps
// the inverse of its share (ShareSize = 64 bytes: d ‖ d⁻¹); decoding a share checks d·d⁻¹ = 1.
//
// # Key generation (StartKeygen, ServerKeygen, PhoneKeygen.Finish)
//
//  1. Phone: d1 ←$; P1 = d1⁻¹·G; a Schnorr proof of knowledge of w = d1⁻¹ = log_G(P1):
//     t ←$, R = t·G, c = SM3("hufu/cosign/v1 keygen proof of knowledge" ‖ len32(ctx) ‖ ctx ‖
//     P1 ‖ R) mod n, z = t + c·w. Sends (P1, c, z). ctx is the request context (key id and
//     user, chosen by the caller) so a proof cannot be replayed for another key.
//  2. Server: recomputes R = z·G − c·P1 with one combined multiplication and checks the hash;
//     d2 ←$; P = d2⁻¹·P1 − G (drawing d2 again if P is the identity, i.e. d = 0);
//     P2 = d2⁻¹·G. Keeps d2, returns (P, P2).
//  3. Phone: checks P + G = d1⁻¹·P2. Both sides equal (d1·d2)⁻¹·G only if the server used our
//     P1, so a server cannot hand the phone a key it controls alone.
//
// The proof stops a malicious phone from choosing P1 as a function of the server's values
// (P1 is fixed before the server answers, and proven known), which rules out rogue-key
// choices of P.
//
// # Signing (PhoneShare.StartSign, ServerShare.Sign, SignSession.Finish)
//
//  1. Phone: e = SM3(Z_A ‖ M) (Digest); k1 ←$; Q1 = k1·G. Sends (Q1, e).
//  2. Server: k2, k3 ←$; (x1, y1) = k3·Q1 + k2·G, one combined multiplication (drawing again
//     if it is the identity); r = (e + x1) mod n (drawing again if 0); s2 = d2·k3;
//     s3 = d2·(r + k2) (drawing again if 0). Returns (r, s2, s3).
//  3. Phone: s = d1·(k1·s2 + s3) − r. Rejects s = 0 and r + s = n (ErrDegenerate) and verifies
//     (r, s) under P before returning it (ErrBadSignature).
//
// Correctness: with k = k1·k3 + k2, x1 is the x-coordinate of k·G and
// s = d1·d2·(k + r) − r = (1 + d)⁻¹·(k + r − r·(1 + d)) = (1 + d)⁻¹·(k − r·d), the SM2
// signature equation. The server sees e but not M; k is known to neither side alone.
//
// # Decryption (StartDecrypt, ServerShare.Decrypt, PhoneShare.FinishDecrypt)
//
// For a ciphertext C1 ‖ C3 ‖ C2 to P (C1 = k·G, (x2, y2) = k·P = d·C1):
//
//  1. Phone: parses and checks C1 (ParseCiphertext). Sends C1.
//  2. Server: T2 = d2⁻¹·C1, one scalar multiplication. Returns T2.
//  3. Phone: d·C1 = d1⁻¹·T2 − C1 = (x2, y2), since d = (d1·d2)⁻¹ − 1; t = KDF(x2 ‖ y2, |C2|)
//     (rejecting all-zero t); M = C2 ⊕ t; checks C3 = SM3(x2 ‖ M ‖ y2) in constant time.
//
// All failures of step 3 return the single ErrDecryption. The server learns C1 and T2 but not
// d1, so it cannot decrypt. It does learn C1, which the daemon uses to bind requests (at a bid
// opening it answers only for registered envelopes) and audits as a hash; blinding C1 would
// hide it but make the server an unbound d2⁻¹ oracle. Accepted layouts: C1C3C2, C1C2C3 and
// the GM/T 0009 ASN.1 SEQUENCE; C1 may be compressed on input.
//
// # Share refresh (ServerKey, PhoneKey)
//
// The server draws ρ ←$ and a 32-byte nonce, computes d2′ = ρ⁻¹·d2 and sends (version + 1,
// ρ, nonce); the phone computes d1′ = d1·ρ. The product d1′·d2′ = d1·d2, so P and the
// certificate stay. Both sides keep the old share until the phone proves it holds d1′ by
// running the signing protocol with d1′ on the challenge
//
//	SM3("hufu/cosign/v1 refresh confirmation" ‖ len32(keyID) ‖ keyID ‖ version ‖ nonce)
//
// which the server routes to d2′ only (ServerKey.ShareFor), then verifies the resulting
// signature under P (CommitRefresh). The transitions are pure and documented on ServerKey and
// PhoneKey: a crash or a lost message at any point leaves the active pair working, and the
// pending pair becomes active only on a verified confirmation. After the commit the old d2 is
// erased, so a copy of the old d1 (a stolen phone backup, say) is useless.
//
// # Delegated pairs (PhoneShare.Delegate, ServerShare.Delegate, AcceptDelegation)
//
// The holder of a key (the grantor, e.g. an enterprise's administrator) gives a member's
// device a share pair of its own under the same P, without d being assembled anywhere. The
// member's device has a registered SM2 key pair (Q_m = x_m·G); ctx is the caller's
// context (DelegationContext: key id, member account, member device).
//
//  1. Grantor's phone: ρ ←$; d1′ = d1·ρ; envelope = SM2-Encrypt(Q_m, tag ‖ len32(ctx) ‖ ctx ‖
//     d1′ ‖ d1′⁻¹) in C1C3C2 form, tag = "hufu/cosign/v1 delegation"; the grant is ρ. Both go
//     to the appliance, which relays the envelope and cannot open it.
//  2. Appliance: d2′ = ρ⁻¹·d2 (and d2′⁻¹ = ρ·d2⁻¹), kept as a separate share bound to the
//     member and device; ρ is not kept. P2′ = d2′⁻¹·G. It draws a 32-byte nonce.
//  3. Member's device: opens the envelope with x_m, checks the tag and that the context is
//     its own (an envelope relayed for another key, member or device is refused), then
//     checks P + G = d1′⁻¹·P2′ (CheckPair), which holds only if the appliance applied the
//     same ρ to the key's d2.
//  4. The member proves it holds d1′ by running the signing protocol with the new pair on
//     the challenge below (DelegationChallenge); the appliance answers this digest, and only
//     this digest, with the pending d2′, and activates the pair once the signature verifies
//     under P.
//
// The challenge is
//
//	SM3("hufu/cosign/v1 delegation challenge" ‖ len32(ctx) ‖ ctx ‖ nonce)
//
// Correctness: d1′·d2′ = d1·ρ·ρ⁻¹·d2 = d1·d2 = (1 + d)⁻¹, so signing and decryption with the
// new pair are exactly those of the original, which keeps working. Destroying d2′ ends the
// member's pair alone; the member's d1′ is useless with d2 (d1′·d2 = ρ·(1 + d)⁻¹). The
// appliance knows ρ (it sees it, and ρ = d2·d2′⁻¹ anyway): with any member's d1′ it would
// have d1, and with d2 the key. Two consequences for the callers. The member device's key
// Q_m reaches the grantor through the appliance, which could substitute its own and open
// the envelope; the grantor's device must therefore authenticate Q_m out of band — the
// client SDK seals only to a Q_m whose fingerprint (SM3, client.DeviceFingerprint) the
// member read from its own phone. And the grantor knows every d1′ it made: when the
// grantor's role passes to a member (an administrator transfer) the new holder refreshes its
// pair and the other pairs are recalled and granted anew.
//
// A member refreshes its own pair like any split key (ServerKey, PhoneKey with d1′ and d2′ as
// the shares): d1″·d2″ = d1′·ρ′·ρ′⁻¹·d2′ = d1·d2, so every pair, refreshed or not, keeps
// signing and decrypting under P, and the refresh touches no other pair.
//
// # Encodings
//
// Points are 65 bytes, 0x04 ‖ x ‖ y; scalars and digests are 32 bytes big-endian; the message
// layouts are listed in messages.go. Every decoder checks the exact length, that each point
// is uncompressed, on the curve and not the identity (ErrIdentity for 0x00 or (0, 0)), and
// that each scalar is in [1, n-1]; failures are *InputError naming the field. gmsm's curve
// functions panic on invalid points, so nothing reaches them without passing ParsePoint.
//
// # Constant time and secrets
//
// Secret scalars are always 32-byte arrays (gmsm's assembly takes the constant-time path for
// full-length scalars). Arithmetic mod n on secrets uses filippo.io/bigmod; inversion uses
// gmsm's constant-time Fermat inversion; range checks on secrets use a branch-free borrow
// computation. Rejections reveal only that a value was rejected. Shares print and log as
// [REDACTED]; the server steps keep their temporaries in a pool that is wiped after each use.
// Go's garbage collector may still leave copies of secrets in memory; the daemon limits the
// exposure (no core dumps, shares cached only unwrapped for a bounded time).
//
// # Threat model
//
// The protocols protect the key against either party alone, and against the network:
//
//   - The server alone (including a fully compromised appliance with its HSM) holds d2 and
//     sees e, Q1, C1 and T2. It cannot sign or decrypt: each needs d1. A malicious server can
//     make operations fail, but cannot make the phone output a wrong signature (the phone
//     verifies it) or accept a key the server controls alone (the keygen check), and it cannot
//     choose what the phone signs during refresh (the challenge is a domain-separated hash).
//   - The phone alone (a stolen phone, or malware on it) holds d1 and can use the key only
//     with the server's cooperation, which the daemon gates with PINs, devices, rate limits,
//     bid-opening windows and audit. A refresh after a suspected compromise makes the stolen
//     d1 useless.
//   - The network sees only values that are public or uniformly masked; the daemon adds TLS.
//
// Not covered: a malicious server can refuse service, and a party that holds both shares (for
// example a LocalServer in tests) holds the key.
package cosign
