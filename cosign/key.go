package cosign

import (
	"context"
	"crypto"
	"errors"
	"io"

	"github.com/emmansun/gmsm/sm2"
)

// Server is the appliance's half as the phone sees it: LocalServer in process, a gRPC client
// in the SDK. The phone's side of every protocol is the same either way.
type Server interface {
	Sign(ctx context.Context, req *SignRequest) (*SignResponse, error)
	Decrypt(ctx context.Context, req *DecryptRequest) (*DecryptResponse, error)
}

// Key is the phone's handle on a split key. It implements crypto.Signer and
// crypto.Decrypter, so it can sign X.509 requests with gmsm's smx509 and decrypt envelopes,
// each call being one round trip to the Server.
type Key struct {
	public Point
	share  *PhoneShare
	server Server
}

var (
	_ crypto.Signer    = (*Key)(nil)
	_ crypto.Decrypter = (*Key)(nil)
)

// NewKey returns the handle for a phone share, its joint public key, and the server holding
// the other share.
func NewKey(public Point, share *PhoneShare, server Server) *Key {
	return &Key{public: public, share: share, server: server}
}

// Public returns the joint SM2 public key as an *ecdsa.PublicKey on gmsm's SM2 curve.
func (k *Key) Public() crypto.PublicKey { return k.public.PublicKey() }

// PublicPoint returns the joint public key in wire form.
func (k *Key) PublicPoint() Point { return k.public }

// SignerOpts asks Sign to treat its input as the message itself and hash it with Z_A for
// the given signer ID (DefaultSignerID when empty), as SM2 signatures of documents need.
type SignerOpts struct {
	ID []byte
}

// HashFunc returns 0: SM2 hashes inside the signature scheme.
func (*SignerOpts) HashFunc() crypto.Hash { return 0 }

// Sign signs with the split key. With *SignerOpts or gmsm's sm2.DefaultSM2SignerOpts the
// input is the message; otherwise it must be the 32-byte digest e. The result is a DER
// signature that any SM2 verifier accepts. rand supplies k1 (crypto/rand when nil).
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), rand, digest, opts)
}

// SignContext is Sign with a context for the round trip.
func (k *Key) SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	e, err := k.digestFor(digest, opts)
	if err != nil {
		return nil, err
	}
	sig, err := k.SignDigest(ctx, rand, &e)
	if err != nil {
		return nil, err
	}
	return sig.ASN1(), nil
}

func (k *Key) digestFor(input []byte, opts crypto.SignerOpts) ([ScalarSize]byte, error) {
	switch o := opts.(type) {
	case *SignerOpts:
		return Digest(&k.public, o.ID, input)
	case *sm2.SM2SignerOption:
		if o == sm2.DefaultSM2SignerOpts {
			return Digest(&k.public, nil, input)
		}
		// gmsm keeps the signer ID of other options unexported, so we cannot honour it.
		return [ScalarSize]byte{}, errors.New("cosign: pass *cosign.SignerOpts to choose a signer ID")
	}
	var e [ScalarSize]byte
	if len(input) != ScalarSize {
		return e, inputError("digest", ErrLength)
	}
	copy(e[:], input)
	return e, nil
}

// SignDigest runs the signing protocol for digest e and returns the verified signature.
func (k *Key) SignDigest(ctx context.Context, rand io.Reader, e *[ScalarSize]byte) (Signature, error) {
	return signWith(ctx, rand, k.share, &k.public, k.server, e)
}

func signWith(ctx context.Context, rand io.Reader, share *PhoneShare, public *Point, server Server, e *[ScalarSize]byte) (Signature, error) {
	if rand == nil {
		rand = cryptoRand
	}
	session, req, err := share.StartSign(rand, public, e)
	if err != nil {
		return Signature{}, err
	}
	resp, err := server.Sign(ctx, req)
	if err != nil {
		return Signature{}, err
	}
	return session.Finish(resp)
}

// DecrypterOpts chooses the ciphertext layout; without it Decrypt detects ASN.1 and
// otherwise assumes C1C3C2.
type DecrypterOpts struct {
	Encoding Encoding
}

// Decrypt decrypts an SM2 ciphertext to the joint public key. rand is unused.
func (k *Key) Decrypt(_ io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return k.DecryptContext(context.Background(), ciphertext, opts)
}

// DecryptContext is Decrypt with a context for the round trip.
func (k *Key) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	enc := DetectEncoding(ciphertext)
	if o, ok := opts.(*DecrypterOpts); ok && o != nil {
		enc = o.Encoding
	}
	ct, err := ParseCiphertext(ciphertext, enc)
	if err != nil {
		return nil, err
	}
	resp, err := k.server.Decrypt(ctx, StartDecrypt(ct))
	if err != nil {
		return nil, err
	}
	return k.share.FinishDecrypt(ct, resp)
}

// LocalServer answers in process with a ServerShare: for tests, examples and tools that hold
// both halves on purpose. It is the same server step the daemon runs.
type LocalServer struct {
	Share *ServerShare
	Rand  io.Reader
}

var _ Server = (*LocalServer)(nil)

func (s *LocalServer) Sign(_ context.Context, req *SignRequest) (*SignResponse, error) {
	resp, err := s.Share.Sign(s.rand(), req)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

func (s *LocalServer) Decrypt(_ context.Context, req *DecryptRequest) (*DecryptResponse, error) {
	resp := s.Share.Decrypt(req)
	return &resp, nil
}

func (s *LocalServer) rand() io.Reader {
	if s.Rand == nil {
		return cryptoRand
	}
	return s.Rand
}

// NewLocalPair runs key generation in process and returns the phone's key handle wired to a
// LocalServer holding the other share.
func NewLocalPair(rand io.Reader, keygenContext []byte) (*Key, *LocalServer, error) {
	phone, req, err := StartKeygen(rand, keygenContext)
	if err != nil {
		return nil, nil, err
	}
	serverShare, resp, err := ServerKeygen(rand, keygenContext, req)
	if err != nil {
		return nil, nil, err
	}
	share, public, err := phone.Finish(resp)
	if err != nil {
		return nil, nil, err
	}
	server := &LocalServer{Share: serverShare, Rand: rand}
	return NewKey(public, share, server), server, nil
}
