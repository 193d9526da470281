package ca

import (
	"context"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// LegacyRevocations writes a CA record as builds before per-entry revocation records kept
// it: the list and the CRL number inside c/ca/<id>.
func LegacyRevocations(ctx context.Context, st *store.Store, caID string, entries []*storepb.RevokedSerial, crlNumber uint64) error {
	return st.Update(ctx, func(tx *store.Tx) error {
		s, err := states.Get(tx, stateID(caID))
		if err != nil {
			return err
		}
		s.Revoked, s.CrlNumber, s.Crl, s.CrlThisUpdateUnixNano = entries, crlNumber, []byte{0x30, 0}, tx.Now().UnixNano()
		if err := states.Put(tx, stateID(caID), s); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test.legacy", Subject: "c/" + stateID(caID), Outcome: store.OutcomeOK})
	})
}

// LegacyState reads the CA record.
func LegacyState(ctx context.Context, st *store.Store, caID string) (*storepb.CAState, error) {
	return states.Read(ctx, st, stateID(caID))
}

// RevokeMany puts n generated serials on the issuing list in batches of 1000 (without the
// audit record per entry that Revoke writes): for the 100,000-entry tests and benchmarks.
func (e *Embedded) RevokeMany(ctx context.Context, n int, at time.Time) error {
	for done := 0; done < n; {
		batch := min(1000, n-done)
		err := e.st.Update(ctx, func(tx *store.Tx) error {
			for i := range batch {
				serial, err := newSerial()
				if err != nil {
					return err
				}
				if _, err := addRevoked(tx, e.id, LevelIssuing, serial, at, (done+i)%11); err != nil {
					return err
				}
			}
			return tx.Audit(store.Event{Actor: "test", Action: "ca.revoke.bulk", Subject: "c/" + revokedPrefix(e.id, LevelIssuing), Outcome: store.OutcomeOK})
		})
		if err != nil {
			return err
		}
		done += batch
	}
	return nil
}

// EncodeCRL runs the streaming encoder over entries with the issuing CA's key.
func (e *Embedded) EncodeCRL(ctx context.Context, entries []smx509.RevocationListEntry, number uint64, this, next time.Time) ([]byte, *sm2.PrivateKey, error) {
	issuer, key, err := e.levelSigner(ctx, LevelIssuing)
	if err != nil {
		return nil, nil, err
	}
	enc := newCRLEncoder(issuer, len(entries))
	for _, en := range entries {
		if err := enc.add(en.SerialNumber.Bytes(), en.RevocationTime, en.ReasonCode); err != nil {
			return nil, nil, err
		}
	}
	der, err := enc.finish(issuer, key, number, this, next)
	return der, key, err
}

// BuildIssuingCRL encodes the stored issuing list as CRLAt does, without storing it.
func (e *Embedded) BuildIssuingCRL(ctx context.Context, expected int) ([]byte, error) {
	issuer, key, err := e.levelSigner(ctx, LevelIssuing)
	if err != nil {
		return nil, err
	}
	enc := newCRLEncoder(issuer, expected)
	if err := e.eachRevoked(ctx, LevelIssuing, enc.add); err != nil {
		return nil, err
	}
	now := e.clock.Now().UTC().Truncate(time.Second)
	return enc.finish(issuer, key, 1, now, now.Add(time.Hour))
}

// IssuingSerial is the issuing CA certificate's serial.
func (e *Embedded) IssuingSerial() *big.Int { return e.issuing.SerialNumber }

// SerialHex formats a serial as the CA does.
func SerialHex(n *big.Int) string { return serialHex(n) }

// BuildIssuingCRLWithGmsm builds the issuing CRL as the encoder replaced it: every entry
// read into memory, then smx509.CreateRevocationList (for the benchmark's comparison).
func (e *Embedded) BuildIssuingCRLWithGmsm(ctx context.Context) ([]byte, error) {
	issuer, key, err := e.levelSigner(ctx, LevelIssuing)
	if err != nil {
		return nil, err
	}
	var entries []smx509.RevocationListEntry
	err = e.eachRevoked(ctx, LevelIssuing, func(serial []byte, at time.Time, reason int) error {
		entries = append(entries, smx509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(serial), RevocationTime: at, ReasonCode: reason})
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := e.clock.Now().UTC().Truncate(time.Second)
	return smx509.CreateRevocationList(nil, &smx509.RevocationList{RevokedCertificateEntries: entries, Number: big.NewInt(1),
		ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, issuer, key)
}
