package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func healthCommand() *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "ask a running hufud whether it is ready (GET /readyz on the admin listener)",
		Description: "Exits 0 only if it is: a container HEALTHCHECK, which has no curl. With the admin listener on\n" +
			"TLS, give its URL as https://… and the CA that issued its certificate.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:7080/readyz", Usage: "the admin listener's readiness `URL`"},
			&cli.StringFlag{Name: "ca", Usage: "PEM CA `FILE` of the admin listener's certificate, for an https URL"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the answer"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			return health(c.String("url"), c.String("ca"), c.Duration("timeout"), c.App.Writer)
		},
	}
}

// health asks a running hufud's admin listener whether it is ready (GET /readyz) and
// succeeds only on 200.
func health(url, caFile string, timeout time.Duration, stdout io.Writer) error {
	client := &http.Client{Timeout: timeout}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", caFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return errors.New("not ready: " + resp.Status + ": " + strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	return nil
}
