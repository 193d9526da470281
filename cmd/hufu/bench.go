package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	urfave "github.com/urfave/cli/v2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hufu-hsm/hufu/admin/adminclient"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
)

// benchReport is what `hufu bench` prints as JSON for one load point: the load, the latency
// of calls, and the daemon's CPU per item beside the raw server step measured in the same run
// (design §6). A sweep (-c 1,4,16,64) prints a table and writes an array of them.
type benchReport struct {
	Operation        string  `json:"operation"`
	Batch            int     `json:"batch"`
	Concurrency      int     `json:"concurrency"`
	TargetRate       float64 `json:"target_calls_per_second,omitempty"`
	Seconds          float64 `json:"seconds"`
	Calls            int64   `json:"calls"`
	Items            int64   `json:"items"` // in successful calls
	Errors           int64   `json:"errors"`
	ItemsPerSecond   float64 `json:"items_per_second"`
	LatencyP50Ms     float64 `json:"latency_p50_ms"`
	LatencyP90Ms     float64 `json:"latency_p90_ms"`
	LatencyP99Ms     float64 `json:"latency_p99_ms"`
	LatencyMaxMs     float64 `json:"latency_max_ms"`
	DaemonCPUSeconds float64 `json:"daemon_cpu_seconds,omitempty"`
	DaemonCPUPerItem float64 `json:"daemon_cpu_us_per_item,omitempty"`
	// DaemonCPUPerItem split: user (Go code, crypto) and the kernel's share (syscalls, fsync,
	// scheduling; large on virtual machines).
	DaemonUserPerItem float64 `json:"daemon_user_us_per_item,omitempty"`
	DaemonSysPerItem  float64 `json:"daemon_sys_us_per_item,omitempty"`
	RawStepCPU        float64 `json:"raw_step_cpu_us"`
	Ratio             float64 `json:"ratio_to_raw_step,omitempty"`
	// The raw step measured with every core computing it at once (rawStepCPU), and the
	// ratio to it: the bound a daemon that keeps its cores busy can approach.
	RawStepAllCoresCPU float64 `json:"raw_step_all_cores_cpu_us,omitempty"`
	RatioAllCores      float64 `json:"ratio_to_raw_step_all_cores,omitempty"`
	// From the daemon's /metrics (with an admin token): WAL syncs, of which each call pays
	// its share, and the daemon's heap allocations per item.
	SyncsPerSecond float64 `json:"wal_syncs_per_second,omitempty"`
	SyncsPerItem   float64 `json:"wal_syncs_per_item,omitempty"`
	AllocsPerItem  float64 `json:"daemon_allocs_per_item,omitempty"`
	// SyncCPU is the CPU one 4 KiB write and fdatasync costs on the daemon's file system,
	// measured by the bench in the same run; OverheadPerItem is the per-call overhead of
	// issue 18: CPU per item − raw step − SyncCPU × syncs per item.
	SyncCPU         float64 `json:"wal_sync_cpu_us,omitempty"`
	OverheadPerItem float64 `json:"overhead_us_per_item,omitempty"`

	metrics bool // the syncs were read from /metrics before and after: the overhead can be derived
}

// bench drives a running development daemon with two-party operations and reports
// throughput, latency and, given the daemon's pid, its CPU per item against the raw server
// step. It signs in a bench account through the development SMS outbox and makes an
// ephemeral split key, so it needs a daemon with development: true.
func (c *cli) benchCommand() *urfave.Command {
	fs := newFlags()
	op := fs.String("op", "sign", "sign, sign-batch, decrypt, decrypt-batch, health (the floor: a call with no work and no caller to authenticate), or opening (a whole bid opening: -bidders, -envelopes, -concurrency, -lead)")
	batch := fs.Int("batch", 32, "items per batch call")
	concurrency := fs.String("c", strconv.Itoa(2*runtime.NumCPU()), "calls in flight; a list (1,4,16,64) runs a sweep, one point after another")
	conns := fs.Int("conns", 4, "TLS connections")
	duration := fs.Duration("d", 10*time.Second, "how long to run each point")
	rate := fs.Float64("rate", 0, "calls per second (0: as fast as possible)")
	pid := fs.Int("daemon-pid", 0, "pid of hufud, to read its CPU time (Linux /proc)")
	fs.IntVar(pid, "pid", 0, "same as -daemon-pid")
	jsonOut := fs.String("json", "", "also write the report to this file")
	adm := addAdminFlags(fs)
	opening := addOpeningFlags(fs)
	return c.command(verb{name: "bench", usage: "load a development daemon and report items/s, latency and the daemon's CPU per item", desc: benchDesc, nargs: noArgs, offline: true, noTimeout: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *op == "opening" {
			return c.benchOpening(ctx, opening, *pid, *jsonOut)
		}
		if *op != "sign" && *op != "sign-batch" && *op != "decrypt" && *op != "decrypt-batch" && *op != "health" {
			return fmt.Errorf("unknown -op %q", *op)
		}
		points, err := parseConcurrencies(*concurrency)
		if err != nil {
			return usagef("-c: %w", err)
		}
		items := 1
		if strings.HasSuffix(*op, "-batch") {
			items = *batch
		}
		probe := &daemonProbe{pid: *pid}
		if tok, err := c.adminToken(adm.tokenFile); err != nil {
			return err
		} else if tok != "" {
			if probe.admin, err = c.adminClient(adm, true); err != nil {
				return err
			}
		}

		fmt.Fprintln(c.errOut, "setting up a bench account and an ephemeral split key ...")
		key, dial, err := c.benchKey(ctx)
		if err != nil {
			return err
		}
		clients := make([]benchClient, *conns)
		for i := range clients {
			conn, err := dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			clients[i] = benchClient{cosign: hufuv1.NewCosignServiceClient(conn.ClientConn()), health: conn.Health}
		}
		load := benchLoad{op: *op, items: items, rate: *rate, duration: *duration, clients: clients, call: key.caller(*op, items)}
		var raw, rawAllCores float64
		if *op != "health" { // a health check has no step: its cost is the floor of every call
			raw, rawAllCores = rawStepCPU(*op, key, 1), rawStepCPU(*op, key, runtime.NumCPU())
		}
		var syncCPU float64
		if probe.admin != nil {
			if syncCPU, err = measureSyncCPU(c.daemonDir); err != nil {
				fmt.Fprintf(c.errOut, "hufu bench: not measuring the cost of a sync: %v\n", err)
			}
		}
		var reports []benchReport
		for _, n := range points {
			if len(points) > 1 {
				fmt.Fprintf(c.errOut, "-c %d\n", n)
			}
			r, err := c.benchPoint(ctx, load, n, probe)
			if err != nil {
				return err
			}
			r.RawStepCPU, r.RawStepAllCoresCPU, r.SyncCPU = raw, rawAllCores, syncCPU
			r.derive()
			reports = append(reports, r)
		}
		var out []byte
		if len(reports) == 1 {
			out, _ = json.MarshalIndent(reports[0], "", "  ")
			fmt.Fprintln(c.out, string(out))
		} else {
			out, _ = json.MarshalIndent(reports, "", "  ")
			printBenchTable(c.out, reports)
		}
		if *jsonOut != "" {
			return os.WriteFile(*jsonOut, append(out, '\n'), 0o644)
		}
		return nil
	}})
}

// parseConcurrencies reads -c: one number or a comma-separated list, each 1 to 4096.
func parseConcurrencies(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("%q: want calls in flight, 1 to 4096, or a list of them (1,4,16,64)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchLoad is what every point of a run sends: the operation, its prepared call, the pace.
type benchLoad struct {
	op       string
	items    int
	rate     float64
	duration time.Duration
	clients  []benchClient
	call     func(context.Context, benchClient) error
}

// benchClient is one connection's stubs.
type benchClient struct {
	cosign hufuv1.CosignServiceClient
	health healthpb.HealthClient
}

// benchPoint runs load at one concurrency and reports it, without the figures derive adds.
func (c *cli) benchPoint(ctx context.Context, load benchLoad, concurrency int, probe *daemonProbe) (benchReport, error) {
	var (
		calls, errs atomic.Int64
		latMu       sync.Mutex
		lats        []time.Duration
		firstErr    atomic.Value
	)
	runCtx, stop := context.WithTimeout(ctx, load.duration)
	defer stop()
	var tick <-chan struct{}
	if load.rate > 0 {
		tick = pace(runCtx, load.rate, concurrency)
	}
	before, err := probe.sample(ctx)
	if err != nil {
		return benchReport{}, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			cl := load.clients[w%len(load.clients)]
			var mine []time.Duration
			for runCtx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-runCtx.Done():
						continue
					}
				}
				t0 := time.Now()
				err := load.call(runCtx, cl)
				if deadline, _ := runCtx.Deadline(); runCtx.Err() != nil || !time.Now().Before(deadline) {
					break // cut short by the end of the run: neither a result nor an error
				}
				mine = append(mine, time.Since(t0))
				calls.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			latMu.Lock()
			lats = append(lats, mine...)
			latMu.Unlock()
		})
	}
	done, progressDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprintln(c.errOut)
				return
			case <-t.C:
				n := calls.Load()
				fmt.Fprintf(c.errOut, "\r%5.0fs  %8d calls  %9.0f items/s  %d errors   ", time.Since(start).Seconds(), n, float64((n-last)*int64(load.items)), errs.Load())
				last = n
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	<-progressDone // its last line is written before anything else of the next point is
	after, err := probe.sample(ctx)
	if err != nil {
		return benchReport{}, err
	}

	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds()) / 1000
	}
	r := benchReport{
		Operation: load.op, Batch: load.items, Concurrency: concurrency, TargetRate: load.rate, Seconds: elapsed.Seconds(),
		Calls: calls.Load(), Items: (calls.Load() - errs.Load()) * int64(load.items), Errors: errs.Load(),
		LatencyP50Ms: pct(.50), LatencyP90Ms: pct(.90), LatencyP99Ms: pct(.99), LatencyMaxMs: pct(1),
	}
	r.ItemsPerSecond = float64(r.Items) / r.Seconds
	if r.Items > 0 {
		per := func(d float64) float64 { return d / float64(r.Items) }
		if before.cpuOK && after.cpuOK {
			r.DaemonCPUSeconds = after.user + after.sys - before.user - before.sys
			r.DaemonCPUPerItem = per(r.DaemonCPUSeconds) * 1e6
			r.DaemonUserPerItem = per(after.user-before.user) * 1e6
			r.DaemonSysPerItem = per(after.sys-before.sys) * 1e6
		}
		if before.metricsOK && after.metricsOK {
			r.metrics = true
			r.SyncsPerSecond = (after.syncs - before.syncs) / r.Seconds
			r.SyncsPerItem = per(after.syncs - before.syncs)
			r.AllocsPerItem = per(after.mallocs - before.mallocs)
		}
	}
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(c.errOut, "first error: %s\n", e)
	}
	return r, nil
}

// pace offers rate calls a second until ctx ends: one token per call, due at start + i/rate,
// queued up to concurrency deep. A time.Ticker drops the ticks its one-deep channel cannot
// hold, so on a busy machine 16 workers drew 2,124 calls/s from a ticker set to 2,796.
func pace(ctx context.Context, rate float64, concurrency int) <-chan struct{} {
	tokens := make(chan struct{}, concurrency)
	period := time.Duration(float64(time.Second) / rate)
	go func() {
		start := time.Now()
		for i := time.Duration(1); ; i++ {
			t := time.NewTimer(time.Until(start.Add(i * period)))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return tokens
}

// derive fills in the ratio to the raw step and the per-call overhead.
func (r *benchReport) derive() {
	if r.DaemonCPUPerItem == 0 {
		return
	}
	if r.RawStepCPU > 0 {
		r.Ratio = r.DaemonCPUPerItem / r.RawStepCPU
	}
	if r.RawStepAllCoresCPU > 0 {
		r.RatioAllCores = r.DaemonCPUPerItem / r.RawStepAllCoresCPU
	}
	if r.SyncCPU > 0 && r.metrics {
		r.OverheadPerItem = r.DaemonCPUPerItem - r.RawStepCPU - r.SyncCPU*r.SyncsPerItem
	}
}

func printBenchTable(w io.Writer, reports []benchReport) {
	fmt.Fprintf(w, "%-14s %5s %10s %9s %9s %9s %7s %7s %7s %8s %9s %9s %9s %8s %8s\n",
		"op", "c", "items/s", "cpu µs", "user µs", "sys µs", "raw µs", "ratio", "raw·all", "ratio·all", "syncs/it", "overhead", "allocs/it", "p50 ms", "p99 ms")
	for _, r := range reports {
		fmt.Fprintf(w, "%-14s %5d %10.0f %9.1f %9.1f %9.1f %7.1f %7.2f %7.1f %8.2f %9.3f %9.1f %9.0f %8.2f %8.2f\n",
			r.Operation, r.Concurrency, r.ItemsPerSecond, r.DaemonCPUPerItem, r.DaemonUserPerItem, r.DaemonSysPerItem,
			r.RawStepCPU, r.Ratio, r.RawStepAllCoresCPU, r.RatioAllCores, r.SyncsPerItem, r.OverheadPerItem, r.AllocsPerItem, r.LatencyP50Ms, r.LatencyP99Ms)
	}
}

// benchKey is the bench's split key: the phone share in memory, the server share in the
// daemon, a ticket for the run.
type benchKey struct {
	id     string
	public cosign.Point
	share  *cosign.PhoneShare
	cred   *hufuv1.Credential
	server *cosign.ServerShare // a local share of the same shape, for the raw-step measurement
}

func (c *cli) benchKey(ctx context.Context) (*benchKey, func() (*client.Conn, error), error) {
	var rnd [4]byte
	rand.Read(rnd[:])
	device := fmt.Sprintf("bench-%x", rnd)
	phone := fmt.Sprintf("199%08d", (uint32(rnd[0])<<16|uint32(rnd[1])<<8|uint32(rnd[2]))%100000000)
	dial := func() (*client.Conn, error) {
		return client.Dial(client.Config{Addr: c.addr, CAFile: c.ca, DeviceID: device})
	}
	conn, err := dial()
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	if _, err := conn.Accounts.SendSmsCode(ctx, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		return nil, nil, err
	}
	code, err := accounts.LatestDevCode(filepath.Join(c.daemonDir, "dev-sms.jsonl"), phone, accounts.PurposeSignIn)
	if err != nil {
		return nil, nil, fmt.Errorf("the bench needs a development daemon's SMS outbox: %w", err)
	}
	in, err := conn.Accounts.SignInWithSmsCode(ctx, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: code, Device: &hufuv1.Device{Id: device, Name: "hufu bench"}})
	if err != nil {
		return nil, nil, err
	}
	token := in.Session.AccessToken
	conn.SetAccessToken(token)
	if _, err := conn.Identity.VerifyWithCfca(ctx, &hufuv1.VerifyWithCfcaRequest{Name: "压测", IdNumber: "11010519491231002X"}); err != nil {
		return nil, nil, err
	}
	keyID := "bench-" + device
	phoneKG, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(in.Account.Id, keyID))
	if err != nil {
		return nil, nil, err
	}
	raw, _ := req.MarshalBinary()
	const pin = "246810"
	keys := hufuv1.NewKeyServiceClient(conn.ClientConn())
	resp, err := keys.CreateKey(ctx, &hufuv1.CreateKeyRequest{KeyId: keyID, KeygenRequest: raw, Pin: pin, Label: "bench"})
	if err != nil {
		return nil, nil, err
	}
	var kresp cosign.KeygenResponse
	if err := kresp.UnmarshalBinary(resp.KeygenResponse); err != nil {
		return nil, nil, err
	}
	share, public, err := phoneKG.Finish(&kresp)
	if err != nil {
		return nil, nil, err
	}
	ticket, err := keys.OpenTicket(ctx, &hufuv1.OpenTicketRequest{KeyId: keyID, Pin: pin})
	if err != nil {
		return nil, nil, err
	}
	_, local, err := cosign.NewLocalPair(rand.Reader, []byte("bench raw step"))
	if err != nil {
		return nil, nil, err
	}
	k := &benchKey{id: keyID, public: public, share: share, server: local.Share,
		cred: &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}}
	authed := func() (*client.Conn, error) {
		c, err := dial()
		if err == nil {
			c.SetAccessToken(token)
		}
		return c, err
	}
	return k, authed, nil
}

// caller returns one bench call. Requests are prepared once: the daemon's cost does not
// depend on their values, and the bench must not measure its own phone steps.
func (k *benchKey) caller(op string, items int) func(context.Context, benchClient) error {
	e := [cosign.ScalarSize]byte{1}
	_, sreq, _ := k.share.StartSign(rand.Reader, &k.public, &e)
	signRaw, _ := sreq.MarshalBinary()
	c1 := cosign.StartDecrypt(&cosign.Ciphertext{C1: k.public}).C1 // any valid point
	batch := func(one []byte) [][]byte {
		out := make([][]byte, items)
		for i := range out {
			out[i] = one
		}
		return out
	}
	checkItems := func(its []*hufuv1.BatchItem) error {
		for _, it := range its {
			if it.ErrorCode != 0 {
				return errors.New(it.ErrorMessage)
			}
		}
		return nil
	}
	switch op {
	case "health":
		return func(ctx context.Context, cl benchClient) error {
			_, err := cl.health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}
	case "sign-batch":
		reqs := batch(signRaw)
		return func(ctx context.Context, cl benchClient) error {
			r, err := cl.cosign.SignBatch(ctx, &hufuv1.SignBatchRequest{KeyId: k.id, Credential: k.cred, SignRequests: reqs})
			if err != nil {
				return err
			}
			return checkItems(r.Items)
		}
	case "decrypt":
		return func(ctx context.Context, cl benchClient) error {
			_, err := cl.cosign.Decrypt(ctx, &hufuv1.DecryptRequest{KeyId: k.id, Credential: k.cred, C1: c1[:]})
			return err
		}
	case "decrypt-batch":
		reqs := batch(c1[:])
		return func(ctx context.Context, cl benchClient) error {
			r, err := cl.cosign.DecryptBatch(ctx, &hufuv1.DecryptBatchRequest{KeyId: k.id, Credential: k.cred, C1S: reqs})
			if err != nil {
				return err
			}
			return checkItems(r.Items)
		}
	}
	return func(ctx context.Context, cl benchClient) error {
		_, err := cl.cosign.Sign(ctx, &hufuv1.SignRequest{KeyId: k.id, Credential: k.cred, SignRequest: signRaw})
		return err
	}
}

// rawStepCPU measures the raw server step (cosign's, the gmsm operation plus its scalar
// work) in this process, in CPU microseconds per operation, on threads locked threads at
// once: one gives the step alone, runtime.NumCPU() the step while every core computes, as a
// loaded daemon's cores do — on shared virtual cores that is slower by a tenth or more, a
// cost no server can avoid (issue 18).
func rawStepCPU(op string, k *benchKey, threads int) float64 {
	e := [cosign.ScalarSize]byte{1}
	_, sreq, _ := k.share.StartSign(rand.Reader, &k.public, &e)
	dreq := &cosign.DecryptRequest{C1: k.public}
	step := func() { k.server.Sign(rand.Reader, sreq) }
	if strings.HasPrefix(op, "decrypt") {
		step = func() { k.server.Decrypt(dreq) }
	}
	const n = 3000
	var wg sync.WaitGroup
	cpu := make([]float64, threads)
	start := make(chan struct{})
	for i := range threads {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-start
			for range 200 {
				step()
			}
			t0 := threadCPU()
			for range n {
				step()
			}
			cpu[i] = threadCPU() - t0
		})
	}
	close(start)
	wg.Wait()
	var total float64
	for _, c := range cpu {
		total += c
	}
	return total / float64(n*threads) * 1e6
}

func threadCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// processCPU reads a process's user + system CPU seconds, and the system part, from
// /proc/<pid>/stat.
func processCPU(pid int) (total, sys float64, err error) {
	if pid == 0 {
		return 0, 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return (utime + stime) / clockTicks, stime / clockTicks, nil
}

// daemonProbe reads the daemon's counters around a load point: its CPU from /proc, given its
// pid, and, given an admin token, its WAL syncs and heap allocations from /metrics.
type daemonProbe struct {
	pid   int
	admin *adminclient.Client
}

type daemonSample struct {
	user, sys      float64 // CPU seconds
	cpuOK          bool
	syncs, mallocs float64
	metricsOK      bool
}

func (p *daemonProbe) sample(ctx context.Context) (daemonSample, error) {
	var s daemonSample
	if p.pid != 0 {
		if total, sys, err := processCPU(p.pid); err == nil {
			s.user, s.sys, s.cpuOK = total-sys, sys, true
		}
	}
	if p.admin == nil {
		return s, nil
	}
	body, err := p.admin.Metrics(ctx)
	if err != nil {
		return s, fmt.Errorf("reading the daemon's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return s, fmt.Errorf("reading the daemon's metrics: %w", err)
	}
	counter := func(name string) (float64, bool) {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 {
			return 0, false
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetUntyped().GetValue(), m.GetUntyped() != nil
	}
	var ok1, ok2 bool
	s.syncs, ok1 = counter("hufu_store_wal_syncs_total")
	s.mallocs, ok2 = counter("go_memstats_mallocs_total")
	s.metricsOK = ok1 && ok2
	return s, nil
}

// measureSyncCPU is the CPU, in microseconds, that one 4 KiB append and fdatasync costs this
// process on one locked thread, in a scratch file in dir (the daemon's data directory: the
// same file system as its WAL). It stands for the CPU one WAL sync costs the daemon.
func measureSyncCPU(dir string) (float64, error) {
	f, err := os.CreateTemp(dir, "hufu-bench-sync-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	block := make([]byte, 4096)
	step := func() error {
		if _, err := f.Write(block); err != nil {
			return err
		}
		return syscall.Fdatasync(int(f.Fd()))
	}
	for range 20 {
		if err := step(); err != nil {
			return 0, err
		}
	}
	const n = 200
	t0 := threadCPU()
	for range n {
		if err := step(); err != nil {
			return 0, err
		}
	}
	return (threadCPU() - t0) / n * 1e6, nil
}
