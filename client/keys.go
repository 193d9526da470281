package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultBatchSize is the number of items Key sends in one SignBatch or DecryptBatch call
// unless told otherwise: the daemon's default maximum.
const DefaultBatchSize = 256

var (
	// ErrVersionMismatch: the appliance answered with a share version other than the one the
	// phone used, so the answer cannot combine with our share. A refresh was interrupted or
	// finished elsewhere; RefreshKey or ResumeRefresh settles it.
	ErrVersionMismatch = errors.New("client: the appliance answered with another share version")
	// ErrOutOfStep: the appliance's share versions do not match any state the phone's
	// keystore can reach (for example a keystore restored from an old backup). The key
	// cannot be used from this keystore.
	ErrOutOfStep = errors.New("client: keystore and appliance disagree on the key's share version")
	// ErrBadAnswer: the appliance's answer is malformed (wrong length, wrong item count).
	ErrBadAnswer = errors.New("client: malformed answer from the appliance")
)

// TicketCredential authorises cosign calls with a ticket from OpenTicket.
func TicketCredential(ticket string) *hufuv1.Credential {
	return &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket}}
}

// PINCredential authorises cosign calls with the certificate PIN itself: each call costs the
// appliance a PIN check, so prefer a ticket for more than one call.
func PINCredential(pin string) *hufuv1.Credential {
	return &hufuv1.Credential{Kind: &hufuv1.Credential_Pin{Pin: pin}}
}

// NewKeyID returns a fresh key id, "key-" and 16 random hex digits. The phone chooses key ids;
// the appliance uses them as idempotency keys.
func NewKeyID() string {
	var b [8]byte
	rand.Read(b[:])
	return "key-" + hex.EncodeToString(b[:])
}

// transient reports whether a failed call may be repeated as it is: the appliance was not
// reached, or asked us to try again.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// retry calls f until it succeeds, fails for good, or four attempts have failed, waiting
// 100 ms, 200 ms, 400 ms between attempts. Only for calls the appliance makes idempotent.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := f()
		if err == nil || !transient(err) || attempt == 4 {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// CreateKey runs two-party key generation for the signed-in account and saves the phone's
// share in ks: a fresh key id, StartKeygen bound to KeygenContext(account, key id), the
// CreateKey call (repeated on transient failures with the same id and request, which the
// appliance answers the same way), and the check that the appliance combined its share with
// ours (PhoneKeygen.Finish). pin becomes the key's certificate PIN (6 digits).
//
// A crash after the appliance answered and before the share is saved leaves a key on the
// appliance that no phone can use; it shows in ListKeys without a local share.
func CreateKey(ctx context.Context, conn *Conn, ks *keystore.Store, pin, label string) (*keystore.Entry, error) {
	acct, err := conn.Accounts.GetAccount(ctx, &hufuv1.GetAccountRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: create key: account: %w", err)
	}
	accountID := acct.GetAccount().GetId()
	keyID := NewKeyID()
	phone, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(accountID, keyID))
	if err != nil {
		return nil, fmt.Errorf("client: create key: %w", err)
	}
	reqBytes, err := req.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("client: create key: %w", err)
	}
	resp, err := retry(ctx, func() (*hufuv1.CreateKeyResponse, error) {
		return conn.Keys.CreateKey(ctx, &hufuv1.CreateKeyRequest{KeyId: keyID, KeygenRequest: reqBytes, Pin: pin, Label: label})
	})
	if err != nil {
		return nil, fmt.Errorf("client: create key: %w", err)
	}
	var kr cosign.KeygenResponse
	if err := kr.UnmarshalBinary(resp.GetKeygenResponse()); err != nil {
		return nil, fmt.Errorf("client: create key: %w: %w", ErrBadAnswer, err)
	}
	share, public, err := phone.Finish(&kr)
	if err != nil {
		return nil, fmt.Errorf("client: create key: %w", err)
	}
	info := resp.GetKey()
	if info.GetId() != keyID || string(info.GetPublicKey()) != string(public[:]) {
		share.Destroy()
		return nil, fmt.Errorf("client: create key: %w: key record does not match the key generated", ErrBadAnswer)
	}
	version := info.GetShareVersion()
	if version == 0 {
		version = 1
	}
	e := &keystore.Entry{ID: keyID, Label: label, AccountID: accountID,
		PhoneKey: cosign.PhoneKey{Public: public, Version: version, Share: share}}
	if err := ks.Save(e); err != nil {
		return nil, fmt.Errorf("client: create key %s: the appliance holds its half but ours was not saved: %w", keyID, err)
	}
	return e, nil
}

// Remote is the appliance's half of one key, over CosignService: the cosign.Server that
// cosign.NewKey combines with the phone's share.
type Remote struct {
	Conn  *Conn
	KeyID string
	// Credential authorises every call (OpenKey's keys use renewed tickets instead).
	Credential *hufuv1.Credential
	// Version is the share version the phone's share belongs to. When set, a sign answer
	// from another version fails with ErrVersionMismatch instead of an unverifiable
	// signature.
	Version uint32

	tickets *ticketSource
}

var _ cosign.Server = (*Remote)(nil)

// call runs one cosign call of n operations with a credential. With renewed tickets, a
// ticket the appliance refuses is replaced once and the call repeated: the appliance refused
// before computing anything, so nothing is answered twice.
func (r *Remote) call(ctx context.Context, n int, f func(*hufuv1.Credential) error) error {
	if r.tickets == nil {
		return f(r.Credential)
	}
	for attempt := 0; ; attempt++ {
		cred, err := r.tickets.credential(ctx, n)
		if err != nil {
			return err
		}
		err = f(cred)
		if status.Code(err) != codes.Unauthenticated || attempt == 1 {
			return err
		}
		r.tickets.drop(cred.GetTicket())
	}
}

// Sign sends one signing request.
func (r *Remote) Sign(ctx context.Context, req *cosign.SignRequest) (*cosign.SignResponse, error) {
	b, err := req.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var resp *hufuv1.SignResponse
	err = r.call(ctx, 1, func(cred *hufuv1.Credential) (err error) {
		resp, err = r.Conn.Cosign.Sign(ctx, &hufuv1.SignRequest{KeyId: r.KeyID, Credential: cred, SignRequest: b})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := r.checkVersion(resp.GetShareVersion()); err != nil {
		return nil, err
	}
	var out cosign.SignResponse
	if err := out.UnmarshalBinary(resp.GetSignResponse()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	return &out, nil
}

// Decrypt sends one decryption request.
func (r *Remote) Decrypt(ctx context.Context, req *cosign.DecryptRequest) (*cosign.DecryptResponse, error) {
	var resp *hufuv1.DecryptResponse
	err := r.call(ctx, 1, func(cred *hufuv1.Credential) (err error) {
		resp, err = r.Conn.Cosign.Decrypt(ctx, &hufuv1.DecryptRequest{KeyId: r.KeyID, Credential: cred, C1: req.C1[:]})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out cosign.DecryptResponse
	if err := out.UnmarshalBinary(resp.GetT2()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	return &out, nil
}

func (r *Remote) checkVersion(v uint32) error {
	if r.Version != 0 && v != 0 && v != r.Version {
		return fmt.Errorf("%w: key %s, phone at version %d, appliance at %d", ErrVersionMismatch, r.KeyID, r.Version, v)
	}
	return nil
}

// Key is an opened split key. The embedded *cosign.Key is the crypto.Signer (pass
// *cosign.SignerOpts to sign a message with a signer ID) and crypto.Decrypter; each use is
// one round trip. SignDigests and DecryptMany use the batch calls. Its methods may be called
// from several goroutines once BatchSize and Progress are set.
type Key struct {
	*cosign.Key
	ID      string
	Version uint32
	// BatchSize caps the items per batch call (DefaultBatchSize when 0).
	BatchSize int
	// Progress, when set, is called after each batch call with the items done and the total.
	Progress func(done, total int)

	remote *Remote
	share  *cosign.PhoneShare
}

// NewKey returns the handle on a stored key that authorises its calls with cred. It uses the
// active share; a pending refresh is left alone (OpenKey settles it first).
func NewKey(conn *Conn, e *keystore.Entry, cred *hufuv1.Credential) *Key {
	remote := &Remote{Conn: conn, KeyID: e.ID, Credential: cred, Version: e.Version}
	return &Key{
		Key: cosign.NewKey(e.Public, e.Share, remote),
		ID:  e.ID, Version: e.Version,
		remote: remote, share: e.Share,
	}
}

// OpenKey loads a key from the keystore, settles a refresh that was interrupted (see
// ResumeRefresh), and opens a cosign ticket with the certificate PIN, so that the key's
// operations pay one PIN check between them. The key keeps the PIN and opens a new ticket
// when the current one is used up or about to expire (see ticketSource); a wrong PIN fails
// here.
func OpenKey(ctx context.Context, conn *Conn, ks *keystore.Store, keyID, pin string) (*Key, error) {
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, err
	}
	if e.Pending != nil {
		if e, err = ResumeRefresh(ctx, conn, ks, keyID); err != nil {
			return nil, err
		}
	}
	tickets := &ticketSource{conn: conn, keyID: keyID, pin: pin, now: time.Now}
	tickets.mu.Lock()
	err = tickets.openLocked(ctx)
	tickets.mu.Unlock()
	if err != nil {
		return nil, err
	}
	k := NewKey(conn, e, nil)
	k.remote.tickets = tickets
	return k, nil
}

// batchSize is the items per batch call: BatchSize, or DefaultBatchSize, but never more
// than one ticket allows.
func (k *Key) batchSize() int {
	n := DefaultBatchSize
	if k.BatchSize > 0 {
		n = k.BatchSize
	}
	if k.remote.tickets != nil {
		if m := k.remote.tickets.maxUses(); m > 0 {
			n = min(n, m)
		}
	}
	return n
}

// itemError turns a failed batch item into the error the same request alone would have got.
func itemError(it *hufuv1.BatchItem) error {
	if it.GetErrorCode() == 0 {
		return nil
	}
	return status.Error(codes.Code(it.GetErrorCode()), it.GetErrorMessage())
}

// SignDigests signs each digest e (SM3(Z_A ‖ M), see cosign.Digest) with SignBatch calls of
// at most BatchSize items, and returns the verified signatures and, per item, the error that
// item met; an item that failed has a zero signature. A call that fails as a whole fails all
// its items.
func (k *Key) SignDigests(ctx context.Context, digests [][cosign.ScalarSize]byte) ([]cosign.Signature, []error) {
	sigs := make([]cosign.Signature, len(digests))
	errs := make([]error, len(digests))
	for start := 0; start < len(digests); start += k.batchSize() {
		end := min(start+k.batchSize(), len(digests))
		k.signChunk(ctx, digests[start:end], sigs[start:end], errs[start:end])
		if k.Progress != nil {
			k.Progress(end, len(digests))
		}
	}
	return sigs, errs
}

func (k *Key) signChunk(ctx context.Context, digests [][cosign.ScalarSize]byte, sigs []cosign.Signature, errs []error) {
	public := k.PublicPoint()
	sessions := make([]*cosign.SignSession, len(digests))
	reqs := make([][]byte, len(digests))
	for i := range digests {
		s, req, err := k.share.StartSign(rand.Reader, &public, &digests[i])
		if err != nil {
			fill(errs, err)
			return
		}
		sessions[i] = s
		reqs[i], _ = req.MarshalBinary()
	}
	var resp *hufuv1.SignBatchResponse
	err := k.remote.call(ctx, len(reqs), func(cred *hufuv1.Credential) (err error) {
		resp, err = k.remote.Conn.Cosign.SignBatch(ctx, &hufuv1.SignBatchRequest{KeyId: k.ID, Credential: cred, SignRequests: reqs})
		return err
	})
	if err == nil {
		err = k.remote.checkVersion(resp.GetShareVersion())
	}
	if err == nil && len(resp.GetItems()) != len(reqs) {
		err = fmt.Errorf("%w: %d items for %d requests", ErrBadAnswer, len(resp.GetItems()), len(reqs))
	}
	if err != nil {
		fill(errs, err)
		return
	}
	for i, it := range resp.GetItems() {
		if errs[i] = itemError(it); errs[i] != nil {
			continue
		}
		var sr cosign.SignResponse
		if err := sr.UnmarshalBinary(it.GetResult()); err != nil {
			errs[i] = fmt.Errorf("%w: %w", ErrBadAnswer, err)
			continue
		}
		sigs[i], errs[i] = sessions[i].Finish(&sr)
	}
}

// DecryptMany decrypts SM2 ciphertexts to the key (ASN.1 or C1C3C2, detected per item; see
// cosign.DetectEncoding) with DecryptBatch calls of at most BatchSize items, and returns the
// plaintexts and, per item, the error that item met. A ciphertext that does not parse fails
// here without reaching the appliance.
func (k *Key) DecryptMany(ctx context.Context, ciphertexts [][]byte) ([][]byte, []error) {
	plain := make([][]byte, len(ciphertexts))
	errs := make([]error, len(ciphertexts))
	cts := make([]*cosign.Ciphertext, len(ciphertexts))
	var todo []int // indices of the ciphertexts that parsed
	for i, b := range ciphertexts {
		if cts[i], errs[i] = cosign.ParseCiphertext(b, cosign.DetectEncoding(b)); errs[i] == nil {
			todo = append(todo, i)
		}
	}
	for start := 0; start < len(todo); start += k.batchSize() {
		chunk := todo[start:min(start+k.batchSize(), len(todo))]
		c1s := make([][]byte, len(chunk))
		for j, i := range chunk {
			c1s[j] = cts[i].C1[:]
		}
		var resp *hufuv1.DecryptBatchResponse
		err := k.remote.call(ctx, len(c1s), func(cred *hufuv1.Credential) (err error) {
			resp, err = k.remote.Conn.Cosign.DecryptBatch(ctx, &hufuv1.DecryptBatchRequest{KeyId: k.ID, Credential: cred, C1S: c1s})
			return err
		})
		if err == nil && len(resp.GetItems()) != len(chunk) {
			err = fmt.Errorf("%w: %d items for %d requests", ErrBadAnswer, len(resp.GetItems()), len(chunk))
		}
		for j, i := range chunk {
			if err != nil {
				errs[i] = err
				continue
			}
			it := resp.GetItems()[j]
			if errs[i] = itemError(it); errs[i] != nil {
				continue
			}
			var dr cosign.DecryptResponse
			if err := dr.UnmarshalBinary(it.GetResult()); err != nil {
				errs[i] = fmt.Errorf("%w: %w", ErrBadAnswer, err)
				continue
			}
			plain[i], errs[i] = k.share.FinishDecrypt(cts[i], &dr)
		}
		if k.Progress != nil {
			k.Progress(start+len(chunk), len(todo))
		}
	}
	return plain, errs
}

func fill(errs []error, err error) {
	for i := range errs {
		errs[i] = err
	}
}
