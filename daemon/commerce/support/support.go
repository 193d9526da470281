// Package support is the phone's help and customer service (seed manual §1.8.7–§1.8.10):
// help articles (使用帮助) and an FAQ from the configuration, 智能客服 as a ranked search
// over that FAQ (no external service; Terms and SearchFaq in api/hufu/v1/support.proto
// document the ranking), the consultation number (电话咨询), and feedback (我的反馈) that a
// person submits — optionally about one of their orders, with attachments — and an
// operators' desk replies to and closes.
//
// # Feedback
//
// States: submitted → replied (the desk may reply again) → closed. The person sees their
// feedback, the replies and the state; the desk (a system client allowed
// hufu.v1.SupportDeskService, granted with a second security officer's approval) sees open
// feedback newest first, with the person's phone masked and nothing else about them.
//
// # Records
//
//	h/fb/<user id>/<feedback id>         storepb.Feedback (the id is newest-first)
//	h/fb-open/<feedback id>              storepb.FeedbackQueueEntry: the desk's queue
//	h/rate/<user id>                     storepb.FeedbackCounter: submissions per day
//	x/feedback/<feedback id>             -> the feedback (unique)
//	x/feedback-request/<user>.<request>  -> the feedback a request id submitted (unique)
//	o/att-link/feedback/<feedback id>/.. its attachments (daemon/attachments)
//
// Audit actions: "feedback.submit", "feedback.reply", "feedback.close". Records carry ids,
// the order id, counts and lengths — never the text, which may hold personal data.
package support

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/attachments"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Orders is what support needs of the order domains.
type Orders interface {
	// OrderOf returns nil if id is one of the caller's orders, an *apierr.Error NotFound if
	// it is not (or does not exist).
	OrderOf(ctx context.Context, caller authn.Caller, id string) error
}

// Accounts is what support needs of the account domain.
type Accounts interface {
	Account(ctx context.Context, caller authn.Caller) (*storepb.User, error)
}

// Options are the feedback policies.
type Options struct {
	// MaxPerDay bounds the feedback one account submits per 24 hours (default 20).
	MaxPerDay int
}

// Deps are the collaborators of the service.
type Deps struct {
	Store       *store.Store
	Attachments *attachments.Service
	Orders      Orders
	Accounts    Accounts
	Clock       interface{ Now() time.Time }
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
}

// Service implements SupportService and SupportDeskService.
type Service struct {
	kb    Knowledge
	index []indexed
	opts  Options
	deps  Deps
	m     *metrics
}

// New returns the service over the help content kb.
func New(kb Knowledge, opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Attachments == nil || deps.Orders == nil || deps.Accounts == nil || deps.Clock == nil {
		return nil, errors.New("support: missing dependency")
	}
	if opts.MaxPerDay <= 0 {
		opts.MaxPerDay = 20
	}
	return &Service{kb: kb, index: newIndex(kb.FAQ), opts: opts, deps: deps, m: newMetrics(deps.Registry)}, nil
}

// Limits of feedback.
const (
	MaxTextRunes       = 500
	MaxReplyRunes      = 1000
	MaxNoteRunes       = 200
	MaxAttachments     = 3
	MaxAttachmentBytes = 2 << 20
	MaxReplies         = 20
	window             = 24 * time.Hour
)

var (
	feedbacks = store.NewCollection(store.KindSupport, func() *storepb.Feedback { return new(storepb.Feedback) })
	queue     = store.NewCollection(store.KindSupport, func() *storepb.FeedbackQueueEntry { return new(storepb.FeedbackQueueEntry) })
	counters  = store.NewCollection(store.KindSupport, func() *storepb.FeedbackCounter { return new(storepb.FeedbackCounter) })
)

const (
	indexFeedback        = "feedback"
	indexFeedbackRequest = "feedback-request"

	stateSubmitted = int32(hufuv1.FeedbackState_FEEDBACK_STATE_SUBMITTED)
	stateReplied   = int32(hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED)
	stateClosed    = int32(hufuv1.FeedbackState_FEEDBACK_STATE_CLOSED)
)

var feedbackIDRE = regexp.MustCompile(`^[0-9a-f]{22}$`)

func feedbackID(user, id string) string { return "fb/" + user + "/" + id }
func feedbackKey(user, id string) string {
	return string(store.KindSupport) + "/" + feedbackID(user, id)
}
func queueID(id string) string     { return "fb-open/" + id }
func application(id string) string { return "feedback/" + id }

func noFeedback(id string) error { return apierr.New(apierr.NotFound, "no feedback %q", id) }

// --- help content ---

// Articles returns the help articles of a category ("" for all), without bodies, and the
// categories.
func (s *Service) Articles(category string) ([]Article, []string) {
	var out []Article
	var cats []string
	for _, a := range s.kb.Articles {
		if !slices.Contains(cats, a.Category) {
			cats = append(cats, a.Category)
		}
		if category == "" || a.Category == category {
			a.Body = ""
			out = append(out, a)
		}
	}
	return out, cats
}

// Entry returns the article or FAQ entry with id.
func (s *Service) Entry(id string) (*Article, *FAQ, error) {
	for _, a := range s.kb.Articles {
		if a.ID == id {
			return &a, nil, nil
		}
	}
	for _, f := range s.kb.FAQ {
		if f.ID == id {
			return nil, &f, nil
		}
	}
	return nil, nil, apierr.New(apierr.NotFound, "no help article or FAQ entry %q", id)
}

// Search ranks the FAQ for query (智能客服).
func (s *Service) Search(query string, limit int) ([]Hit, error) {
	limit, err := checkQuery(query, limit)
	if err != nil {
		return nil, err
	}
	hits := search(s.kb.FAQ, s.index, query, limit)
	switch {
	case strings.TrimSpace(query) == "":
		s.m.events.WithLabelValues("faq_list").Inc()
	case len(hits) == 0:
		s.m.events.WithLabelValues("faq_search_no_hit").Inc()
	default:
		s.m.events.WithLabelValues("faq_search").Inc()
	}
	return hits, nil
}

// Contact returns the consultation number and hours.
func (s *Service) Contact() (phone, hours string, err error) {
	if s.kb.Phone == "" {
		return "", "", apierr.New(apierr.NotFound, "no customer-service number is configured")
	}
	return s.kb.Phone, s.kb.Hours, nil
}

// --- feedback ---

// checkText trims text and checks it is 1..max characters without control characters
// other than line breaks and tabs.
func checkText(field, s string, max int, optional bool) (string, error) {
	return text.Lines(field, s, max, !optional)
}

// NewAttachment is a file submitted with feedback.
type NewAttachment struct {
	FileName, MediaType string
	Content             []byte
}

// Submit stores new feedback (request_id makes it idempotent).
func (s *Service) Submit(ctx context.Context, caller authn.Caller, requestID, text, orderID string, files []NewAttachment) (*storepb.Feedback, error) {
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "feedback is submitted by users")
	}
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	text, err := checkText("text", text, MaxTextRunes, false)
	if err != nil {
		return nil, err
	}
	if len(files) > MaxAttachments {
		return nil, apierr.Invalidf("attachments", "at most %d", MaxAttachments)
	}
	refs := make([]*storepb.AttachmentRef, len(files))
	for i, f := range files {
		field := fmt.Sprintf("attachments[%d]", i)
		if len(f.Content) > MaxAttachmentBytes {
			return nil, apierr.Invalidf(field, "the file is larger than %d MiB", MaxAttachmentBytes>>20)
		}
		if refs[i], err = s.deps.Attachments.Check(field, f.Content, f.FileName, f.MediaType); err != nil {
			return nil, err
		}
	}
	reqValue := store.ScopedValue(caller.UserID, requestID)
	if k, err := s.deps.Store.Lookup(ctx, indexFeedbackRequest, reqValue); err == nil {
		out := new(storepb.Feedback)
		return out, s.deps.Store.Get(ctx, k, out)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if orderID != "" {
		if err := s.deps.Orders.OrderOf(ctx, caller, orderID); err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) && (ae.Kind == apierr.NotFound || ae.Kind == apierr.InvalidArgument) {
				return nil, apierr.Invalidf("order_id", "no order of yours with this id")
			}
			return nil, err
		}
	}
	u, err := s.deps.Accounts.Account(ctx, caller)
	if err != nil {
		return nil, err
	}
	fb := &storepb.Feedback{Id: store.NewestFirstID(s.deps.Clock.Now()), UserId: caller.UserID, PhoneMasked: identity.MaskPhone(u.GetPhone()),
		Text: text, OrderId: orderID, State: stateSubmitted, RequestId: requestID}
	var out *storepb.Feedback
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexFeedbackRequest, reqValue); err == nil {
			out = new(storepb.Feedback)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := s.bump(tx, caller.UserID); err != nil {
			return err
		}
		now := tx.Now().UnixNano()
		fb.CreatedUnixNano, fb.UpdatedUnixNano = now, now
		fb.AttachmentIds = nil
		for i, f := range files {
			ref, err := s.deps.Attachments.PutClaimed(tx, refs[i].Field, f.Content, f.FileName, f.MediaType)
			if err != nil {
				return err
			}
			if err := s.deps.Attachments.Link(tx, application(fb.Id), ref); err != nil {
				return err
			}
			if !slices.Contains(fb.AttachmentIds, ref.Id) {
				fb.AttachmentIds = append(fb.AttachmentIds, ref.Id)
			}
		}
		k := feedbackKey(caller.UserID, fb.Id)
		if err := tx.Claim(indexFeedback, fb.Id, k); err != nil {
			return err
		}
		if err := tx.Claim(indexFeedbackRequest, reqValue, k); err != nil {
			return err
		}
		if err := feedbacks.Put(tx, feedbackID(caller.UserID, fb.Id), fb); err != nil {
			return err
		}
		if err := queue.Put(tx, queueID(fb.Id), &storepb.FeedbackQueueEntry{UserId: caller.UserID, State: stateSubmitted}); err != nil {
			return err
		}
		out = fb
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "feedback.submit", Subject: k, Outcome: store.OutcomeOK,
			Details: map[string]string{"feedback": fb.Id, "order": fb.OrderId, "attachments": strings.Join(fb.AttachmentIds, ","),
				"text_chars": strconv.Itoa(utf8.RuneCountInString(text))}})
	})
	if err != nil {
		return nil, err
	}
	if out == fb {
		s.m.events.WithLabelValues("feedback_submit").Inc()
	}
	return out, nil
}

func (s *Service) bump(tx *store.Tx, user string) error {
	c, err := counters.Get(tx, "rate/"+user)
	if errors.Is(err, store.ErrNotFound) {
		c = &storepb.FeedbackCounter{WindowEndUnixNano: tx.Now().Add(window).UnixNano()}
	} else if err != nil {
		return err
	}
	end := time.Unix(0, c.WindowEndUnixNano)
	if int(c.Count) >= s.opts.MaxPerDay {
		wait := end.Sub(tx.Now())
		return apierr.Exhausted(wait, "at most %d feedback a day; retry in %v", s.opts.MaxPerDay, wait.Round(time.Second))
	}
	c.Count++
	return counters.Put(tx, "rate/"+user, c, store.ExpiresAt(end))
}

func checkPage(size int) (int, error) {
	if size < 0 || size > 100 {
		return 0, apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	return size, nil
}

func badCursor(err error) error {
	if errors.Is(err, store.ErrBadCursor) {
		return apierr.Invalidf("page_token", "not a token from the previous page")
	}
	return err
}

// List lists the caller's feedback, newest first.
func (s *Service) List(ctx context.Context, caller authn.Caller, size int, token string) ([]*storepb.Feedback, string, error) {
	if caller.UserID == "" {
		return nil, "", apierr.New(apierr.PermissionDenied, "feedback is submitted by users")
	}
	size, err := checkPage(size)
	if err != nil {
		return nil, "", err
	}
	page, err := feedbacks.List(ctx, s.deps.Store, "fb/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: size}, nil)
	if err != nil {
		return nil, "", badCursor(err)
	}
	out := make([]*storepb.Feedback, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// Get returns one of the caller's feedback.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Feedback, error) {
	if !feedbackIDRE.MatchString(id) || caller.UserID == "" {
		return nil, noFeedback(id)
	}
	fb, err := feedbacks.Read(ctx, s.deps.Store, feedbackID(caller.UserID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, noFeedback(id)
	}
	return fb, err
}

// Attachments lists the attachments of feedback.
func (s *Service) Attachments(ctx context.Context, fb *storepb.Feedback) ([]*storepb.AttachmentRef, error) {
	if len(fb.AttachmentIds) == 0 {
		return nil, nil
	}
	return s.deps.Attachments.List(ctx, application(fb.Id))
}

// --- the desk ---

// ListOpen lists feedback that is not closed, newest first (unrepliedOnly: submitted only).
func (s *Service) ListOpen(ctx context.Context, size int, token string, unrepliedOnly bool) ([]*storepb.Feedback, string, error) {
	size, err := checkPage(size)
	if err != nil {
		return nil, "", err
	}
	page, err := queue.List(ctx, s.deps.Store, "fb-open/", store.ListOptions{Cursor: token, Limit: size}, func(_ string, e *storepb.FeedbackQueueEntry) bool {
		return !unrepliedOnly || e.State == stateSubmitted
	})
	if err != nil {
		return nil, "", badCursor(err)
	}
	out := make([]*storepb.Feedback, 0, len(page.Items))
	for _, it := range page.Items {
		id := strings.TrimPrefix(queue.ID(it.Key), "fb-open/")
		fb, err := feedbacks.Read(ctx, s.deps.Store, feedbackID(it.Value.UserId, id))
		if errors.Is(err, store.ErrNotFound) {
			continue // closed between the two reads
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, fb)
	}
	s.m.events.WithLabelValues("desk_list").Inc()
	return out, page.Next, nil
}

// change applies fn to feedback found by id inside one transaction and audits it.
func (s *Service) change(ctx context.Context, caller authn.Caller, id, action string, fn func(tx *store.Tx, fb *storepb.Feedback) (map[string]string, error)) (*storepb.Feedback, error) {
	if !caller.AtDesk() {
		return nil, apierr.New(apierr.PermissionDenied, "the support desk is a desk system client's or a console operator's")
	}
	if !feedbackIDRE.MatchString(id) {
		return nil, apierr.Invalidf("feedback_id", "not a feedback id (22 hex digits)")
	}
	var out *storepb.Feedback
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexFeedback, id)
		if errors.Is(err, store.ErrNotFound) {
			return noFeedback(id)
		}
		if err != nil {
			return err
		}
		fb := new(storepb.Feedback)
		if err := tx.Get(k, fb); err != nil {
			return err
		}
		if fb.State == stateClosed {
			return apierr.New(apierr.FailedPrecondition, "the feedback is closed")
		}
		details, err := fn(tx, fb)
		if err != nil {
			return err
		}
		fb.UpdatedUnixNano = tx.Now().UnixNano()
		if err := tx.Put(k, fb); err != nil {
			return err
		}
		if fb.State == stateClosed {
			err = queue.Delete(tx, queueID(id))
		} else {
			err = queue.Put(tx, queueID(id), &storepb.FeedbackQueueEntry{UserId: fb.UserId, State: fb.State})
		}
		if err != nil {
			return err
		}
		out = fb
		details["feedback"] = id
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "feedback." + action, Subject: k, Outcome: store.OutcomeOK, Details: details})
	})
	if err != nil {
		return nil, err
	}
	s.m.events.WithLabelValues("feedback_" + action).Inc()
	return out, nil
}

// Reply adds the desk's reply to open feedback.
func (s *Service) Reply(ctx context.Context, caller authn.Caller, id, text string) (*storepb.Feedback, error) {
	text, err := checkText("text", text, MaxReplyRunes, false)
	if err != nil {
		return nil, err
	}
	return s.change(ctx, caller, id, "reply", func(tx *store.Tx, fb *storepb.Feedback) (map[string]string, error) {
		if len(fb.Replies) >= MaxReplies {
			return nil, apierr.New(apierr.FailedPrecondition, "the feedback has %d replies, the most allowed; close it", MaxReplies)
		}
		fb.Replies = append(fb.Replies, &storepb.FeedbackReply{Desk: caller.Desk(), Text: text, CreatedUnixNano: tx.Now().UnixNano()})
		fb.State = stateReplied
		return map[string]string{"reply_chars": strconv.Itoa(utf8.RuneCountInString(text)), "replies": strconv.Itoa(len(fb.Replies))}, nil
	})
}

// Close closes open feedback with an optional note shown to the person.
func (s *Service) Close(ctx context.Context, caller authn.Caller, id, note string) (*storepb.Feedback, error) {
	note, err := checkText("note", note, MaxNoteRunes, true)
	if err != nil {
		return nil, err
	}
	return s.change(ctx, caller, id, "close", func(_ *store.Tx, fb *storepb.Feedback) (map[string]string, error) {
		fb.State, fb.ClosedBy, fb.CloseNote = stateClosed, caller.Desk(), note
		return map[string]string{"note_chars": strconv.Itoa(utf8.RuneCountInString(note))}, nil
	})
}

// DeskAttachment returns an attachment of open feedback.
func (s *Service) DeskAttachment(ctx context.Context, id, attachmentID string) (*storepb.AttachmentRef, []byte, error) {
	if !feedbackIDRE.MatchString(id) {
		return nil, nil, apierr.Invalidf("feedback_id", "not a feedback id (22 hex digits)")
	}
	k, err := s.deps.Store.Lookup(ctx, indexFeedback, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, noFeedback(id)
	}
	if err != nil {
		return nil, nil, err
	}
	fb := new(storepb.Feedback)
	if err := s.deps.Store.Get(ctx, k, fb); err != nil {
		return nil, nil, err
	}
	if fb.State == stateClosed {
		return nil, nil, apierr.New(apierr.FailedPrecondition, "the feedback is closed")
	}
	if !slices.Contains(fb.AttachmentIds, attachmentID) {
		return nil, nil, apierr.New(apierr.NotFound, "no attachment %q on this feedback", attachmentID)
	}
	refs, err := s.Attachments(ctx, fb)
	if err != nil {
		return nil, nil, err
	}
	blob, err := s.deps.Attachments.Get(ctx, attachmentID)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range refs {
		if r.Id == attachmentID {
			return r, blob.Content, nil
		}
	}
	return &storepb.AttachmentRef{Id: attachmentID, MediaType: blob.MediaType, Size: blob.Size}, blob.Content, nil
}
