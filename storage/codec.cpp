#include "storage/codec.hpp"

#include <fmt/format.h>

namespace mscan::storage::codec {

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_be64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_zigzag(std::string& out, std::int64_t v) {
  put_varint(out, (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

void put_lp_string(std::string& out, std::string_view s) {
  put_be32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

std::string_view reader::take(std::size_t n) noexcept {
  if (!ok_ || n > in_.size()) {
    ok_ = false;
    return {};
  }
  auto r = in_.substr(0, n);
  in_.remove_prefix(n);
  return r;
}

std::uint8_t reader::u8() noexcept {
  auto b = take(1);
  return ok_ ? static_cast<std::uint8_t>(b[0]) : 0;
}

std::uint32_t reader::be32() noexcept {
  auto b = take(4);
  if (!ok_) return 0;
  std::uint32_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<std::uint8_t>(c);
  return v;
}

std::uint64_t reader::be64() noexcept {
  auto b = take(8);
  if (!ok_) return 0;
  std::uint64_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<std::uint8_t>(c);
  return v;
}

std::uint64_t reader::varint() noexcept {
  std::uint64_t v = 0;
  for (int shift = 0; ok_ && shift < 64; shift += 7) {
    auto b = u8();
    if (!ok_) return 0;
    // The 10th byte may only carry the top bit of a 64-bit value.
    if (shift == 63 && (b & 0x7e) != 0) break;
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  ok_ = false;
  return 0;
}

std::uint32_t reader::varint32() noexcept {
  auto v = varint();
  if (v > 0xffffffffu) {
    ok_ = false;
    return 0;
  }
  return static_cast<std::uint32_t>(v);
}

std::int64_t reader::zigzag() noexcept {
  auto v = varint();
  return static_cast<std::int64_t>((v >> 1) ^ (~(v & 1) + 1));
}

std::string_view reader::string() noexcept {
  auto n = varint();
  if (!ok_ || n > in_.size()) {
    ok_ = false;
    return {};
  }
  return take(static_cast<std::size_t>(n));
}

std::string_view reader::lp_string() noexcept {
  auto n = be32();
  return take(n);
}

std::size_t reader::count(std::size_t min_element_bytes) noexcept {
  auto n = varint();
  if (!ok_ || min_element_bytes == 0 || n > in_.size() / min_element_bytes) {
    ok_ = false;
    return 0;
  }
  return static_cast<std::size_t>(n);
}

namespace {

error corrupt(std::string_view what) { return error{error::code::corruption, std::string(what)}; }

void put_strings(std::string& out, const std::vector<std::string>& v) {
  put_varint(out, v.size());
  for (const auto& s : v) put_string(out, s);
}

std::vector<std::string> get_strings(reader& r) {
  std::vector<std::string> v;
  auto n = r.count(1);
  v.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) v.emplace_back(r.string());
  return v;
}

// Checks the leading version byte; returns an error text or "" when it is usable.
std::string check_version(reader& r, std::uint8_t supported, std::string_view what) {
  auto v = r.u8();
  if (!r.ok()) return fmt::format("empty {} value", what);
  if (v == 0 || v > supported)
    return fmt::format("{} value has encoding version {} (this build reads up to {})", what, v,
                       supported);
  return {};
}

}  // namespace

std::string encode(const message_record& m) {
  std::string out;
  out.reserve(128 + m.subject.size() + m.message_id.size());
  put_u8(out, message_value_version);
  put_string(out, m.message_id);
  put_string(out, m.subject);
  put_string(out, m.from);
  put_strings(out, m.to);
  put_strings(out, m.cc);
  put_zigzag(out, m.date);
  put_varint(out, m.size);
  put_varint(out, m.sightings.size());
  for (const auto& s : m.sightings) {
    put_string(out, s.user);
    put_string(out, s.folder);
    put_varint(out, s.uidvalidity);
    put_varint(out, s.uid);
  }
  put_strings(out, m.users);
  put_strings(out, m.contacts);
  put_strings(out, m.accounts);
  put_strings(out, m.items);
  put_strings(out, m.tickets);
  put_varint(out, m.attachments.size());
  for (const auto& a : m.attachments) {
    put_string(out, a.name);
    put_string(out, a.type);
    put_varint(out, a.size);
  }
  put_varint(out, m.reasons.size());
  for (const auto& x : m.reasons) {
    put_string(out, x.kind);
    put_string(out, x.target);
    put_string(out, x.cause);
  }
  put_strings(out, m.warnings);
  return out;
}

expected<message_record, error> decode_message(std::string_view key, std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, message_value_version, "message"); !e.empty())
    return unexpected{corrupt(e)};
  message_record m;
  m.key = std::string(key);
  m.message_id = r.string();
  m.subject = r.string();
  m.from = r.string();
  m.to = get_strings(r);
  m.cc = get_strings(r);
  m.date = r.zigzag();
  m.size = r.varint();
  auto ns = r.count(4);
  m.sightings.reserve(ns);
  for (std::size_t i = 0; i < ns && r.ok(); ++i) {
    sighting s;
    s.user = r.string();
    s.folder = r.string();
    s.uidvalidity = r.varint32();
    s.uid = r.varint32();
    m.sightings.push_back(std::move(s));
  }
  m.users = get_strings(r);
  m.contacts = get_strings(r);
  m.accounts = get_strings(r);
  m.items = get_strings(r);
  m.tickets = get_strings(r);
  auto na = r.count(3);
  m.attachments.reserve(na);
  for (std::size_t i = 0; i < na && r.ok(); ++i) {
    attachment_info a;
    a.name = r.string();
    a.type = r.string();
    a.size = r.varint();
    m.attachments.push_back(std::move(a));
  }
  auto nr = r.count(3);
  m.reasons.reserve(nr);
  for (std::size_t i = 0; i < nr && r.ok(); ++i) {
    link_reason x;
    x.kind = r.string();
    x.target = r.string();
    x.cause = r.string();
    m.reasons.push_back(std::move(x));
  }
  m.warnings = get_strings(r);
  if (!r.ok()) return unexpected{corrupt("message value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("message value has trailing bytes")};
  return m;
}

std::string encode(const folder_checkpoint& cp) {
  std::string out;
  put_u8(out, checkpoint_value_version);
  put_varint(out, cp.uidvalidity);
  put_varint(out, cp.last_uid);
  put_varint(out, cp.highest_modseq);
  return out;
}

expected<folder_checkpoint, error> decode_checkpoint(std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, checkpoint_value_version, "checkpoint"); !e.empty())
    return unexpected{corrupt(e)};
  folder_checkpoint cp;
  cp.uidvalidity = r.varint32();
  cp.last_uid = r.varint32();
  cp.highest_modseq = r.varint();
  if (!r.ok()) return unexpected{corrupt("checkpoint value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("checkpoint value has trailing bytes")};
  return cp;
}

std::string encode_uid(std::uint32_t uid) {
  std::string out;
  put_u8(out, uid_value_version);
  put_varint(out, uid);
  return out;
}

expected<std::uint32_t, error> decode_uid(std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, uid_value_version, "uid"); !e.empty()) return unexpected{corrupt(e)};
  auto uid = r.varint32();
  if (!r.ok() || !r.at_end()) return unexpected{corrupt("uid value is malformed")};
  return uid;
}

std::string encode(const mailbox_state& s) {
  std::string out;
  put_u8(out, mailbox_state_value_version);
  put_string(out, s.state);
  put_zigzag(out, s.last_scanned);
  put_varint(out, s.consecutive_failures);
  put_string(out, s.last_error_reason);
  put_string(out, s.last_error_detail);
  put_varint(out, s.messages_tracked);
  put_string(out, s.credential_hash);
  put_u8(out, s.notified ? 1 : 0);
  put_u8(out, s.slow ? 1 : 0);
  return out;
}

expected<mailbox_state, error> decode_mailbox_state(std::string_view user, std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, mailbox_state_value_version, "mailbox state"); !e.empty())
    return unexpected{corrupt(e)};
  mailbox_state s;
  s.user = std::string(user);
  s.state = r.string();
  s.last_scanned = r.zigzag();
  s.consecutive_failures = r.varint32();
  s.last_error_reason = r.string();
  s.last_error_detail = r.string();
  s.messages_tracked = r.varint();
  if (value.size() > 0 && static_cast<std::uint8_t>(value[0]) >= 2) {  // version 1 lacks these
    s.credential_hash = r.string();
    s.notified = r.u8() != 0;
  }
  if (value.size() > 0 && static_cast<std::uint8_t>(value[0]) >= 3)  // versions 1 and 2: not slow
    s.slow = r.u8() != 0;
  if (!r.ok()) return unexpected{corrupt("mailbox state value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("mailbox state value has trailing bytes")};
  return s;
}

std::string encode(const notification_record& n) {
  std::string out;
  put_u8(out, notification_value_version);
  put_string(out, n.reason);
  put_string(out, n.detail);
  put_string(out, n.next_step);
  put_varint(out, n.consecutive_failures);
  put_string(out, n.delivery);
  return out;
}

expected<notification_record, error> decode_notification(std::int64_t at, std::string_view user,
                                                         std::string_view kind, std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, notification_value_version, "notification"); !e.empty())
    return unexpected{corrupt(e)};
  notification_record n;
  n.at = at;
  n.user = std::string(user);
  n.kind = std::string(kind);
  n.reason = r.string();
  n.detail = r.string();
  n.next_step = r.string();
  n.consecutive_failures = r.varint32();
  n.delivery = r.string();
  if (!r.ok()) return unexpected{corrupt("notification value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("notification value has trailing bytes")};
  return n;
}

std::string encode(const rule_stat& s) {
  std::string out;
  put_u8(out, rule_stat_value_version);
  put_varint(out, s.hits);
  put_zigzag(out, s.last_hit);
  return out;
}

expected<rule_stat, error> decode_rule_stat(std::string_view name, std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, rule_stat_value_version, "rule stats"); !e.empty())
    return unexpected{corrupt(e)};
  rule_stat s;
  s.name = std::string(name);
  s.hits = r.varint();
  s.last_hit = r.zigzag();
  if (!r.ok()) return unexpected{corrupt("rule stats value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("rule stats value has trailing bytes")};
  return s;
}

std::string encode(const outbox_record& o) {
  std::string out;
  put_u8(out, outbox_value_version);
  put_string(out, o.kind);
  put_string(out, o.ticket);
  put_string(out, o.comment);
  put_string(out, o.subject);
  put_string(out, o.from);
  put_varint(out, o.to.size());
  for (const auto& t : o.to) put_string(out, t);
  put_string(out, o.data);
  put_string(out, o.state);
  put_varint(out, o.attempts);
  put_zigzag(out, o.created);
  put_zigzag(out, o.next_attempt);
  put_zigzag(out, o.sent_at);
  put_string(out, o.last_error_reason);
  put_string(out, o.last_error_detail);
  put_string(out, o.server_reply);
  return out;
}

expected<outbox_record, error> decode_outbox(std::string_view message_id, std::string_view value) {
  reader r(value);
  if (auto e = check_version(r, outbox_value_version, "outbox"); !e.empty())
    return unexpected{corrupt(e)};
  outbox_record o;
  o.message_id = std::string(message_id);
  o.kind = r.string();
  o.ticket = r.string();
  o.comment = r.string();
  o.subject = r.string();
  o.from = r.string();
  const auto n = r.count();
  for (std::size_t i = 0; i < n && r.ok(); ++i) o.to.emplace_back(r.string());
  o.data = r.string();
  o.state = r.string();
  o.attempts = r.varint32();
  o.created = r.zigzag();
  o.next_attempt = r.zigzag();
  o.sent_at = r.zigzag();
  o.last_error_reason = r.string();
  o.last_error_detail = r.string();
  o.server_reply = r.string();
  if (!r.ok()) return unexpected{corrupt("outbox value is truncated or malformed")};
  if (!r.at_end()) return unexpected{corrupt("outbox value has trailing bytes")};
  return o;
}

}  // namespace mscan::storage::codec
