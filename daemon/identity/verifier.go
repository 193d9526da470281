package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
)

// Method is how a real name was verified.
type Method int

const (
	MethodCFCA       Method = iota + 1 // name and resident ID number, checked by CFCA
	MethodAlipayFace                   // Alipay face verification
	MethodBankCard                     // bank card four elements
)

// Person is what a verification establishes. The daemon stores ID numbers encrypted.
type Person struct {
	Name     string
	IDNumber string
}

// BankCard is the four elements of a bank card check.
type BankCard struct {
	Person
	CardNumber    string
	ReservedPhone string
}

// ErrMismatch: the provider says the elements do not belong together (wrong name for the ID
// number, card not held by this person, face not matched). Reported as FailedPrecondition.
var ErrMismatch = errors.New("identity: the provider did not confirm these details")

// ErrUnknownSession: a face verification id that was never started or has been used.
var ErrUnknownSession = errors.New("identity: unknown face verification")

// Verifier is a real-name verification provider. Implementations talk to CFCA, Alipay and a
// bank-card service; inputs reach them already format-checked. They must not log the inputs.
//
// Contract for real providers: VerifyNameID and VerifyBankCard return nil, ErrMismatch, or
// an error meaning "provider unavailable" (which the API reports as Unavailable); StartFace
// returns an id and a URL for the Alipay app, and CompleteFace returns the person the face
// matched, or ErrMismatch, or ErrUnknownSession.
type Verifier interface {
	VerifyNameID(ctx context.Context, p Person) error
	StartFace(ctx context.Context, p Person) (id, url string, err error)
	CompleteFace(ctx context.Context, id string) (Person, error)
	VerifyBankCard(ctx context.Context, c BankCard) error
}

// DevVerifier confirms every well-formed input, for development and tests. Names starting
// with "错" (wrong) are refused with ErrMismatch so that the failure path can be exercised;
// so is a bank card whose reserved phone number ends in 0000 (a card bound to a verified
// account is checked with the account's own name, which cannot start with 错).
type DevVerifier struct {
	mu    sync.Mutex
	faces map[string]Person
}

var _ Verifier = (*DevVerifier)(nil)

func mismatch(p Person) error {
	if []rune(p.Name)[0] == '错' {
		return ErrMismatch
	}
	return nil
}

func (v *DevVerifier) VerifyNameID(_ context.Context, p Person) error { return mismatch(p) }

func (v *DevVerifier) VerifyBankCard(_ context.Context, c BankCard) error {
	if strings.HasSuffix(c.ReservedPhone, "0000") {
		return ErrMismatch
	}
	return mismatch(c.Person)
}

func (v *DevVerifier) StartFace(_ context.Context, p Person) (string, string, error) {
	if err := mismatch(p); err != nil {
		return "", "", err
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.faces == nil {
		v.faces = map[string]Person{}
	}
	v.faces[id] = p
	return id, "https://render.alipay.com/p/f/fd-dev/index.html?certify_id=" + id, nil
}

func (v *DevVerifier) CompleteFace(_ context.Context, id string) (Person, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.faces[id]
	if !ok {
		return Person{}, ErrUnknownSession
	}
	delete(v.faces, id)
	return p, nil
}
