package identity

import (
	"context"
	"errors"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

func TestCheckResidentID(t *testing.T) {
	cases := []struct {
		id   string
		want error
	}{
		{"11010519491231002X", nil}, // the GB 11643 example
		{"110105194912310021", ErrIDCheckDigit},
		{"11010519491231002x", ErrIDFormat}, // lower-case x is not the standard form
		{"440524188001010014", ErrIDBirthDate},
		{"110105202912310027", ErrIDBirthDate}, // born in the future
		{"110105194902300020", ErrIDBirthDate}, // 30 February
		{"11010519491231002", ErrIDFormat},
		{"011010519491231002X", ErrIDFormat},
		{"", ErrIDFormat},
	}
	for _, c := range cases {
		if err := CheckResidentID(c.id, now); !errors.Is(err, c.want) {
			t.Errorf("%q: got %v, want %v", c.id, err, c.want)
		}
	}
}

func TestCheckCardNumber(t *testing.T) {
	cases := []struct {
		card string
		want error
	}{
		{"6222020200112233446", nil},
		{"4111111111111111", nil},
		{"4111111111111112", ErrCardLuhn},
		{"41111111111", ErrCardNumber},
		{"4111 1111 1111 1111", ErrCardNumber},
	}
	for _, c := range cases {
		if err := CheckCardNumber(c.card); !errors.Is(err, c.want) {
			t.Errorf("%q: got %v, want %v", c.card, err, c.want)
		}
	}
}

func TestCheckMobileAndName(t *testing.T) {
	for phone, ok := range map[string]bool{
		"13800138000": true, "19912345678": true, "12800138000": false, "1380013800": false,
		"+8613800138000": false, "138001380001": false,
	} {
		if (CheckMobile(phone) == nil) != ok {
			t.Errorf("CheckMobile(%q) ok=%v", phone, !ok)
		}
	}
	for name, ok := range map[string]bool{
		"张三": true, "欧阳娜娜": true, "阿卜杜·热合曼": true, "Li Lei": true, "张": false, "张3": false,
		" 张三": false, "<script>": false,
	} {
		if (CheckName(name) == nil) != ok {
			t.Errorf("CheckName(%q) ok=%v", name, !ok)
		}
	}
}

func TestMasks(t *testing.T) {
	for got, want := range map[string]string{
		MaskPhone("13800138000"):        "138****8000",
		MaskID("11010519491231002X"):    "110***********002X",
		MaskCard("6222020200112233446"): "***************3446",
		MaskName("欧阳娜娜"):                "欧***",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestDevVerifier(t *testing.T) {
	ctx := context.Background()
	var v DevVerifier
	p := Person{Name: "张三", IDNumber: "11010519491231002X"}
	if err := v.VerifyNameID(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyNameID(ctx, Person{Name: "错误", IDNumber: p.IDNumber}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("mismatch path: %v", err)
	}
	id, _, err := v.StartFace(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.CompleteFace(ctx, id)
	if err != nil || got != p {
		t.Fatalf("complete face: %v %v", got, err)
	}
	if _, err := v.CompleteFace(ctx, id); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("a face verification completes once: %v", err)
	}
}
