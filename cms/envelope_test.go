package cms

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/cosign"
)

var bidFile = bytes.Repeat([]byte("投标文件 bid file content; "), 200)

// independentC1 extracts the key transport's C1 with encoding/asn1 alone, a parse that
// shares no code with KeyTransportC1.
func independentC1(t testing.TB, envelopedDER []byte) (cosign.Point, []byte) {
	t.Helper()
	type recipientInfo struct {
		Version      int
		IssuerSerial asn1.RawValue
		KeyAlg       asn1.RawValue
		EncryptedKey []byte
	}
	type envelopedData struct {
		Version        int
		RecipientInfos []recipientInfo `asn1:"set"`
		ECI            asn1.RawValue
	}
	type contentInfo struct {
		Type    asn1.ObjectIdentifier
		Content envelopedData `asn1:"explicit,tag:0"`
	}
	type sm2Ciphertext struct {
		X, Y   *big.Int
		C3, C2 []byte
	}
	var ci contentInfo
	if rest, err := asn1.Unmarshal(envelopedDER, &ci); err != nil || len(rest) > 0 || len(ci.Content.RecipientInfos) != 1 {
		t.Fatalf("encoding/asn1: %v", err)
	}
	ek := ci.Content.RecipientInfos[0].EncryptedKey
	var ct sm2Ciphertext
	if _, err := asn1.Unmarshal(ek, &ct); err != nil {
		t.Fatal(err)
	}
	var p cosign.Point
	p[0] = 4
	ct.X.FillBytes(p[1:33])
	ct.Y.FillBytes(p[33:])
	return p, ek
}

func TestEnvelopeTwoParty(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSplitSigner(t, c, "投标人")
	env, err := Envelope(bidFile, s.cert)
	if err != nil {
		t.Fatal(err)
	}
	c1, keyTransport, err := KeyTransportC1(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantC1, wantKT := independentC1(t, env)
	if c1 != wantC1 || !bytes.Equal(keyTransport, wantKT) {
		t.Fatalf("KeyTransportC1 = %x, want %x", c1, wantC1)
	}
	if _, err := cosign.ParsePoint(c1[:]); err != nil {
		t.Fatal(err)
	}
	// The bid opening: the phone's Decrypter runs the two-party decryption of the key.
	var sentC1 []cosign.Point
	decrypt := func(ct []byte) ([]byte, error) {
		parsed, err := cosign.ParseCiphertext(ct, cosign.DetectEncoding(ct))
		if err != nil {
			return nil, err
		}
		sentC1 = append(sentC1, parsed.C1) // what the appliance will see and check
		return s.key.Decrypt(nil, ct, nil)
	}
	got, err := OpenEnvelope(env, nil, decrypt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bidFile) {
		t.Fatal("content differs")
	}
	if len(sentC1) != 1 || sentC1[0] != c1 {
		t.Fatal("the C1 sent for decryption is not the registered one")
	}
	if got, err := OpenEnvelope(env, s.cert, decrypt); err != nil || !bytes.Equal(got, bidFile) {
		t.Fatalf("by certificate: %v", err)
	}
	// gmsm's own decrypt path takes the split key as a crypto.Decrypter too.
	p7, err := pkcs7.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p7.Decrypt(s.cert, s.key); err != nil || !bytes.Equal(got, bidFile) {
		t.Fatalf("gmsm Decrypt with cosign.Key: %v", err)
	}
}

func TestEnvelopeForm(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "recipient")
	for _, content := range [][]byte{nil, {0}, bytes.Repeat([]byte{7}, 16), bidFile} {
		env, err := Envelope(content, s.cert)
		if err != nil {
			t.Fatal(err)
		}
		e, err := parseEnvelope("test", env, s.cert)
		if err != nil {
			t.Fatal(err)
		}
		if !e.cipherAlg.Algorithm.Equal(oidSM4CBC) || len(e.ciphertext) != (len(content)/16+1)*16 {
			t.Fatalf("content encryption %v, %d bytes", e.cipherAlg.Algorithm, len(e.ciphertext))
		}
		got, err := OpenEnvelope(env, nil, func(ct []byte) ([]byte, error) { return s.key.Decrypt(nil, ct, nil) })
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%d bytes: %v", len(content), err)
		}
	}
}

func TestEnvelopeRefuses(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "recipient")
	s2 := newSigner(t, c, "other recipient")
	for name, cert := range map[string]*smx509.Certificate{"nil": nil, "P-256": p256Cert(t, c)} {
		if _, err := Envelope(bidFile, cert); err == nil {
			t.Errorf("%s recipient: no error", name)
		} else {
			wantErr(t, err, "recipient", ErrInput)
		}
	}
	env, err := Envelope(bidFile, s.cert)
	if err != nil {
		t.Fatal(err)
	}
	two, err := pkcs7.EncryptSM(pkcs.SM4CBC, bidFile, []*smx509.Certificate{s.cert, s2.cert})
	if err != nil {
		t.Fatal(err)
	}
	aes, err := pkcs7.Encrypt(pkcs.AES128CBC, bidFile, []*smx509.Certificate{s.cert})
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := pkcs7.EncryptSM(pkcs.SM4GCM, bidFile, []*smx509.Certificate{s.cert})
	if err != nil {
		t.Fatal(err)
	}
	cfca, err := pkcs7.EncryptCFCA(pkcs.SM4CBC, bidFile, []*smx509.Certificate{s.cert})
	if err != nil {
		t.Fatal(err)
	}
	signed := gmsmDetached(t, s, documentHash[:])
	own := func(ct []byte) ([]byte, error) { return s.key.Decrypt(nil, ct, nil) }
	others := func(ct []byte) ([]byte, error) { return s2.key.Decrypt(nil, ct, nil) }
	short := func([]byte) ([]byte, error) { return make([]byte, 15), nil }
	tests := []struct {
		name      string
		der       []byte
		recipient *smx509.Certificate
		decrypt   func([]byte) ([]byte, error)
		part      string
		errIs     []error
	}{
		{"valid", env, nil, own, "", nil},
		{"two recipients, first named", two, s.cert, own, "", nil},
		{"two recipients, second named", two, s2.cert, others, "", nil},
		{"two recipients, none named", two, nil, own, "envelopedData.recipientInfos", []error{ErrRecipient}},
		{"not for this certificate", env, s2.cert, others, "envelopedData.recipientInfos", []error{ErrRecipient}},
		{"another key decrypts", env, nil, others, "key transport", []error{ErrDecryption}},
		{"key of the wrong size", env, nil, short, "key transport", []error{ErrDecryption}},
		{"no decrypt function", env, nil, nil, "decrypt", []error{ErrInput}},
		{"PKCS#7 OIDs and AES", aes, nil, own, "contentInfo.contentType", []error{ErrUnsupported}},
		{"SM4-GCM", gcm, nil, own, "encryptedContentInfo.contentEncryptionAlgorithm", []error{ErrUnsupported}},
		{"CFCA raw key transport", cfca, nil, own, "envelopedData.recipientInfos[0].encryptedKey", []error{ErrMalformed, cosign.ErrCiphertextEncoding}},
		{"a SignedData", signed, nil, own, "contentInfo.contentType", []error{ErrUnsupported}},
		{"empty", nil, nil, own, "contentInfo", []error{ErrMalformed}},
		{"garbage", []byte("bid file"), nil, own, "contentInfo", []error{ErrMalformed}},
		{"truncated", env[:len(env)-1], nil, own, "contentInfo", []error{ErrMalformed}},
		{"trailing byte", append(append([]byte{}, env...), 0), nil, own, "contentInfo", []error{ErrMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenEnvelope(tc.der, tc.recipient, tc.decrypt)
			wantErr(t, err, tc.part, tc.errIs...)
			if err == nil && !bytes.Equal(got, bidFile) {
				t.Fatal("content differs")
			}
			if tc.decrypt == nil || errors.Is(err, ErrDecryption) {
				return
			}
			// KeyTransportC1 parses the same way.
			_, _, kerr := KeyTransportC1(tc.der, tc.recipient)
			if (kerr == nil) != (err == nil) {
				t.Fatalf("KeyTransportC1: %v; OpenEnvelope: %v", kerr, err)
			}
		})
	}
}

func TestKeyTransportC1OffCurve(t *testing.T) {
	// An envelope whose key transport's C1 is not on the curve is refused before any
	// decryption could see it.
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "recipient")
	env, err := Envelope(bidFile, s.cert)
	if err != nil {
		t.Fatal(err)
	}
	c1, _, err := KeyTransportC1(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte{}, env...)
	i := bytes.Index(bad, c1[34:]) // the last 31 bytes of y, in the INTEGER whatever its length
	if i < 0 {
		t.Fatal("y not found")
	}
	bad[i+30] ^= 1
	_, _, err = KeyTransportC1(bad, nil)
	wantErr(t, err, "envelopedData.recipientInfos[0].encryptedKey", ErrMalformed, cosign.ErrNotOnCurve)
}
