// Package commerce groups the money and lifecycle side of an account (seed manual §1.8):
// each subpackage is one domain with its own records, gRPC service and audit actions —
// cards (银行卡管理), support (使用帮助, 智能客服, 电话咨询, 我的反馈), invoices (发票管理), payments
// and the ledger, and aftersales (退款/售后).
package commerce
