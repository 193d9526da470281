package cosign

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// -update regenerates testdata/kat.json and the fuzz seed corpora. Known answers change only
// when the protocol changes on purpose; review the diff.
var update = flag.Bool("update", false, "rewrite testdata/kat.json and testdata/fuzz seeds")

const katPath = "testdata/kat.json"

// vector records every message of one key's life under a deterministic randomness source
// (detRand seeded with Seed, consumed in the order the steps appear here).
type vector struct {
	Seed           string          `json:"seed"`
	Context        string          `json:"context"`
	KeygenRequest  string          `json:"keygen_request"`
	KeygenResponse string          `json:"keygen_response"`
	PhoneShare     string          `json:"phone_share"`
	ServerShare    string          `json:"server_share"`
	Sign           []signVector    `json:"sign"`
	Decrypt        []decryptVector `json:"decrypt"`
	Refresh        refreshVector   `json:"refresh"`
}

type signVector struct {
	ID           string `json:"id"`
	Message      string `json:"message"`
	SignRequest  string `json:"sign_request"`
	SignResponse string `json:"sign_response"`
	Signature    string `json:"signature_der"`
}

type decryptVector struct {
	Encoding        string `json:"encoding"`
	Ciphertext      string `json:"ciphertext"` // input, made by gmsm once
	DecryptRequest  string `json:"decrypt_request"`
	DecryptResponse string `json:"decrypt_response"`
	Plaintext       string `json:"plaintext"`
}

type refreshVector struct {
	Offer            string `json:"offer"`
	Challenge        string `json:"challenge"`
	PhoneShareAfter  string `json:"phone_share_after"`
	ServerShareAfter string `json:"server_share_after"`
	Confirmation     string `json:"confirmation"`
}

var encodingsByName = map[string]Encoding{"C1C3C2": C1C3C2, "C1C2C3": C1C2C3, "ASN.1": ASN1}

func computeVector(t *testing.T, seed string, signs []signVector, decrypts []decryptVector) vector {
	t.Helper()
	r := newDetRand(seed)
	v := vector{Seed: seed, Context: "key:" + seed}
	hx := func(m interface{ MarshalBinary() ([]byte, error) }) string {
		return hex.EncodeToString(mustMarshal(t, m))
	}
	phoneKG, kreq, err := StartKeygen(r, []byte(v.Context))
	if err != nil {
		t.Fatal(err)
	}
	serverShare, kresp, err := ServerKeygen(r, []byte(v.Context), kreq)
	if err != nil {
		t.Fatal(err)
	}
	phoneShare, public, err := phoneKG.Finish(kresp)
	if err != nil {
		t.Fatal(err)
	}
	v.KeygenRequest, v.KeygenResponse = hx(kreq), hx(kresp)
	v.PhoneShare, v.ServerShare = hx(phoneShare), hx(serverShare)

	for _, s := range signs {
		msg, _ := hex.DecodeString(s.Message)
		e, err := Digest(&public, []byte(s.ID), msg)
		if err != nil {
			t.Fatal(err)
		}
		session, req, err := phoneShare.StartSign(r, &public, &e)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := serverShare.Sign(r, req)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := session.Finish(&resp)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(public.PublicKey(), []byte(s.ID), msg, sig.ASN1()) {
			t.Fatalf("%s: known-answer signature does not verify with gmsm", seed)
		}
		s.SignRequest, s.SignResponse, s.Signature = hx(req), hx(&resp), hex.EncodeToString(sig.ASN1())
		v.Sign = append(v.Sign, s)
	}

	for _, d := range decrypts {
		raw, _ := hex.DecodeString(d.Ciphertext)
		ct, err := ParseCiphertext(raw, encodingsByName[d.Encoding])
		if err != nil {
			t.Fatal(err)
		}
		req := StartDecrypt(ct)
		resp := serverShare.Decrypt(req)
		pt, err := phoneShare.FinishDecrypt(ct, &resp)
		if err != nil {
			t.Fatalf("%s/%s: %v", seed, d.Encoding, err)
		}
		d.DecryptRequest, d.DecryptResponse, d.Plaintext = hx(req), hx(&resp), hex.EncodeToString(pt)
		v.Decrypt = append(v.Decrypt, d)
	}

	srv, offer, err := ServerKey{Public: public, Version: 1, Share: serverShare}.BeginRefresh(r)
	if err != nil {
		t.Fatal(err)
	}
	phone, challenge, err := PhoneKey{Public: public, Version: 1, Share: phoneShare}.AcceptOffer([]byte(v.Context), &offer)
	if err != nil {
		t.Fatal(err)
	}
	session, req, err := phone.Pending.Share.StartSign(r, &public, &challenge)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.ShareFor([]byte(v.Context), &challenge).Sign(r, req)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := session.Finish(&resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CommitRefresh([]byte(v.Context), &proof); err != nil {
		t.Fatal(err)
	}
	v.Refresh = refreshVector{
		Offer: hx(&offer), Challenge: hex.EncodeToString(challenge[:]),
		PhoneShareAfter: hx(phone.Pending.Share), ServerShareAfter: hx(srv.Pending.Share),
		Confirmation: hx(&proof),
	}
	return v
}

func katInputs(seed string) ([]signVector, []decryptVector) {
	signs := []signVector{
		{ID: "", Message: ""},
		{ID: DefaultSignerID, Message: hex.EncodeToString([]byte("投标文件摘要"))},
		{ID: "bidder@example.cn", Message: hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 1000))},
	}
	var decrypts []decryptVector
	for _, name := range []string{"C1C3C2", "C1C2C3", "ASN.1"} {
		decrypts = append(decrypts, decryptVector{Encoding: name})
	}
	return signs, decrypts
}

// freshCiphertexts encrypts a plaintext to the vector's key with gmsm, in each encoding.
func freshCiphertexts(t *testing.T, seed string, decrypts []decryptVector) {
	keyOnly := computeVector(t, seed, nil, nil)
	kresp := new(KeygenResponse)
	raw, _ := hex.DecodeString(keyOnly.KeygenResponse)
	if err := kresp.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	opts := map[string]*sm2.EncrypterOpts{
		"C1C3C2": nil,
		"C1C2C3": sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C2C3),
		"ASN.1":  sm2.ASN1EncrypterOpts,
	}
	for i := range decrypts {
		msg := []byte(fmt.Sprintf("bid of %s, %s", seed, decrypts[i].Encoding))
		ct, err := sm2.Encrypt(newDetRand("enc/"+seed), kresp.Public.PublicKey(), msg, opts[decrypts[i].Encoding])
		if err != nil {
			t.Fatal(err)
		}
		decrypts[i].Ciphertext = hex.EncodeToString(ct)
	}
}

func TestKnownAnswers(t *testing.T) {
	seeds := []string{"kat-0", "kat-1", "kat-2", "kat-3"}
	var want []vector
	if !*update {
		raw, err := os.ReadFile(katPath)
		if err != nil {
			t.Fatalf("%v (run go test -run TestKnownAnswers -update to create it)", err)
		}
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if len(want) != len(seeds) {
			t.Fatalf("%s has %d vectors, want %d", katPath, len(want), len(seeds))
		}
	}
	var got []vector
	for i, seed := range seeds {
		signs, decrypts := katInputs(seed)
		if *update {
			freshCiphertexts(t, seed, decrypts)
		} else {
			for j := range decrypts {
				decrypts[j].Ciphertext = want[i].Decrypt[j].Ciphertext
			}
		}
		got = append(got, computeVector(t, seed, signs, decrypts))
	}
	if *update {
		out, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(katPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for i := range got {
		g, _ := json.MarshalIndent(got[i], "", "  ")
		w, _ := json.MarshalIndent(want[i], "", "  ")
		if !bytes.Equal(g, w) {
			t.Errorf("vector %s differs from %s:\ngot  %s\nwant %s", seeds[i], katPath, g, w)
		}
	}
}

// writeSeedCorpus stores inputs in go test's corpus format under testdata/fuzz/<target>.
func writeSeedCorpus(t *testing.T, target string, inputs ...[]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, in := range inputs {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
