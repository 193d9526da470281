package client_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/emmansun/gmsm/sm2"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
)

// The phone's side of a split key: create it once, then open it with the PIN and use it as
// a crypto.Signer and crypto.Decrypter. conn is a signed-in connection whose account has a
// verified identity.
func Example() {
	ctx := context.Background()
	conn, err := client.Dial(client.Config{Addr: "127.0.0.1:7443", CAFile: ".hufu/tls/ca.pem", DeviceID: "my-phone-0001"})
	if err != nil {
		log.Fatal(err)
	}
	conn.SetAccessToken("hat_...") // from AccountService sign-in
	ks, err := keystore.Open("keys", "device.key")
	if err != nil {
		log.Fatal(err)
	}

	created, err := client.CreateKey(ctx, conn, ks, "246810", "bids 2026")
	if err != nil {
		log.Fatal(err)
	}
	key, err := client.OpenKey(ctx, conn, ks, created.ID, "246810")
	if err != nil {
		log.Fatal(err)
	}

	// An ordinary SM2 signature (DER) on a document, signer ID "1234567812345678".
	doc := []byte("bid document")
	sig, err := key.Sign(rand.Reader, doc, &cosign.SignerOpts{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sm2.VerifyASN1WithSM2(created.Public.PublicKey(), nil, doc, sig))

	// Anyone encrypts to the public key with standard SM2; decrypting needs both halves.
	ct, _ := sm2.Encrypt(rand.Reader, created.Public.PublicKey(), []byte("price"), nil)
	plain, err := key.Decrypt(nil, ct, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(plain))

	// New shares, same public key; safe to interrupt and run again.
	if _, err := client.RefreshKey(ctx, conn, ks, created.ID, client.PINCredential("246810"), nil); err != nil {
		log.Fatal(err)
	}
}
