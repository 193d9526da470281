package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// standInSeals stands in for the appliance's SealService: it records each request and
// answers with one seal. (The end-to-end test runs against a daemon once the service is
// wired into it.)
type standInSeals struct {
	hufuv1.SealServiceClient
	got  []proto.Message
	seal *hufuv1.Seal
}

func (s *standInSeals) CreateSeal(_ context.Context, r *hufuv1.CreateSealRequest, _ ...grpc.CallOption) (*hufuv1.CreateSealResponse, error) {
	s.got = append(s.got, r)
	return &hufuv1.CreateSealResponse{Seal: s.seal}, nil
}

func (s *standInSeals) ListSeals(_ context.Context, r *hufuv1.ListSealsRequest, _ ...grpc.CallOption) (*hufuv1.ListSealsResponse, error) {
	s.got = append(s.got, r)
	if r.EnterpriseUscc == "91110000802100433B" {
		return nil, status.Error(codes.NotFound, `no enterprise "91110000802100433B" among yours`)
	}
	return &hufuv1.ListSealsResponse{Seals: []*hufuv1.Seal{s.seal}}, nil
}

func (s *standInSeals) GetSeal(_ context.Context, r *hufuv1.GetSealRequest, _ ...grpc.CallOption) (*hufuv1.GetSealResponse, error) {
	s.got = append(s.got, r)
	withImage := proto.Clone(s.seal).(*hufuv1.Seal)
	withImage.Image = []byte("\x89PNG\r\n\x1a\nstand-in")
	return &hufuv1.GetSealResponse{Seal: withImage}, nil
}

func (s *standInSeals) SetSealState(_ context.Context, r *hufuv1.SetSealStateRequest, _ ...grpc.CallOption) (*hufuv1.SetSealStateResponse, error) {
	s.got = append(s.got, r)
	return &hufuv1.SetSealStateResponse{Seal: s.seal}, nil
}

func (s *standInSeals) AuthoriseSeal(_ context.Context, r *hufuv1.AuthoriseSealRequest, _ ...grpc.CallOption) (*hufuv1.AuthoriseSealResponse, error) {
	s.got = append(s.got, r)
	return &hufuv1.AuthoriseSealResponse{Seal: s.seal}, nil
}

func (s *standInSeals) UnauthoriseSeal(_ context.Context, r *hufuv1.UnauthoriseSealRequest, _ ...grpc.CallOption) (*hufuv1.UnauthoriseSealResponse, error) {
	s.got = append(s.got, r)
	return &hufuv1.UnauthoriseSealResponse{Seal: s.seal}, nil
}

func TestSealCommands(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "stamp.png")
	if err := os.WriteFile(img, []byte("\x89PNG\r\n\x1a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const id = "0123456789abcdef0123456789abcdef"
	seal := &hufuv1.Seal{Id: id, EnterpriseUscc: "91350100M000100Y43", Name: "合同专用章", Type: hufuv1.SealType_SEAL_TYPE_CONTRACT,
		State: hufuv1.SealState_SEAL_STATE_ACTIVE, AuthorisedUserIds: []string{"u1"}, ImageWidth: 32, ImageHeight: 32,
		CreatedAt: timestamppb.Now(), UpdatedAt: timestamppb.Now()}
	cases := []struct {
		name    string
		args    []string
		want    proto.Message
		printed []string
	}{
		{"create for an enterprise", []string{"create", "-name", "合同专用章", "-type", "contract", "-image", img, "-enterprise", "91350100M000100Y43",
			"-request-id", "req-00000001", "-serial", "fedcba9876543210fedcba9876543210"},
			&hufuv1.CreateSealRequest{RequestId: "req-00000001", EnterpriseUscc: "91350100M000100Y43", Name: "合同专用章",
				Type: hufuv1.SealType_SEAL_TYPE_CONTRACT, Image: []byte("\x89PNG\r\n\x1a\n"), CertificateSerial: "fedcba9876543210fedcba9876543210"},
			[]string{id, "启用 active", "合同章 contract", "enterprise 91350100M000100Y43", "authorised to u1"}},
		{"create a signature by its Chinese name", []string{"create", "-name", "签名", "-type", "手写签名", "-image", img, "-request-id", "req-00000002"},
			&hufuv1.CreateSealRequest{RequestId: "req-00000002", Name: "签名", Type: hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE,
				Image: []byte("\x89PNG\r\n\x1a\n")}, []string{id}},
		{"list own", []string{"list"}, &hufuv1.ListSealsRequest{}, []string{id}},
		{"list an enterprise's", []string{"list", "-enterprise", "91350100M000100Y43"}, &hufuv1.ListSealsRequest{EnterpriseUscc: "91350100M000100Y43"}, []string{id}},
		{"show", []string{"show", id, "-o", filepath.Join(dir, "out.png")}, &hufuv1.GetSealRequest{SealId: id}, []string{"image 32×32", "wrote"}},
		{"disable", []string{"disable", id}, &hufuv1.SetSealStateRequest{SealId: id, State: hufuv1.SealState_SEAL_STATE_DISABLED}, []string{id}},
		{"enable", []string{"enable", id}, &hufuv1.SetSealStateRequest{SealId: id, State: hufuv1.SealState_SEAL_STATE_ACTIVE}, []string{id}},
		{"authorise", []string{"authorise", id, "u2"}, &hufuv1.AuthoriseSealRequest{SealId: id, UserId: "u2"}, []string{id}},
		{"unauthorise", []string{"unauthorise", id, "u2"}, &hufuv1.UnauthoriseSealRequest{SealId: id, UserId: "u2"}, []string{id}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			cl := &cli{out: &out, errOut: &out}
			stub := &standInSeals{seal: seal}
			if err := cl.seal(context.Background(), stub, c.args); err != nil {
				t.Fatal(err)
			}
			if len(stub.got) != 1 || !proto.Equal(stub.got[0], c.want) {
				t.Fatalf("sent %v, want %v", stub.got, c.want)
			}
			for _, p := range c.printed {
				if !strings.Contains(out.String(), p) {
					t.Fatalf("printed %q, want %q in it", out.String(), p)
				}
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.png")); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("show -o wrote %q, %v", b, err)
	}
}

func TestSealCommandErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"burn"}, "unknown command"},
		{[]string{"disable", "a", "b"}, "unexpected arguments"},
		{[]string{"create", "-name", "x"}, "seal create -name N -type T -image FILE.png"},
		{[]string{"create", "-name", "x", "-type", "round", "-image", "x.png"}, "-type: one of official, contract"},
		{[]string{"create", "-name", "x", "-type", "official", "-image", "/nonexistent/x.png"}, "no such file"},
		{[]string{"disable"}, "hufu seal disable SEAL"},
		{[]string{"authorise", "s"}, "hufu seal authorise SEAL USER"},
		{[]string{"show"}, "hufu seal show SEAL"},
		{[]string{"list", "-enterprise", "91110000802100433B"}, "among yours"},
	} {
		var out bytes.Buffer
		err := (&cli{out: &out, errOut: &out}).seal(context.Background(), &standInSeals{}, c.args)
		if err == nil || !strings.Contains(describe(err), c.want) || strings.Contains(describe(err), "\n") {
			t.Errorf("%v: got %v, want one line with %q", c.args, err, c.want)
		}
	}
}

// seal runs "hufu seal ARGS" against a stand-in SealService.
func (c *cli) seal(_ context.Context, seals hufuv1.SealServiceClient, args []string) error {
	c.sealsStandIn = seals
	return c.app(c.out, c.errOut).Run(append([]string{"hufu", "seal"}, args...))
}
