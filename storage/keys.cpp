#include "storage/keys.hpp"

#include <array>

#include "storage/codec.hpp"
#include "storage/types.hpp"

namespace mscan::storage {

namespace keys {

namespace {

std::string with_format(std::size_t reserve) {
  std::string k;
  k.reserve(reserve + 1);
  codec::put_u8(k, key_format);
  return k;
}

// A reader positioned after the format byte, or nullopt for a foreign format.
std::optional<codec::reader> open(std::string_view k) {
  codec::reader r(k);
  if (r.u8() != key_format || !r.ok()) return std::nullopt;
  return r;
}

}  // namespace

std::string message(std::string_view key) {
  auto k = with_format(4 + key.size());
  codec::put_lp_string(k, key);
  return k;
}

std::optional<std::string> decode_message(std::string_view k) {
  auto r = open(k);
  if (!r) return std::nullopt;
  std::string key(r->lp_string());
  if (!r->ok() || !r->at_end()) return std::nullopt;
  return key;
}

std::string message_id(std::string_view normalised_id) {
  auto k = with_format(4 + normalised_id.size());
  codec::put_lp_string(k, normalised_id);
  return k;
}

std::string checkpoint_prefix(std::string_view user) {
  auto k = with_format(4 + user.size());
  codec::put_lp_string(k, user);
  return k;
}

std::string checkpoint(std::string_view user, std::string_view folder) {
  auto k = checkpoint_prefix(user);
  codec::put_lp_string(k, folder);
  return k;
}

std::optional<checkpoint_key> decode_checkpoint(std::string_view k) {
  auto r = open(k);
  if (!r) return std::nullopt;
  checkpoint_key out;
  out.user = r->lp_string();
  out.folder = r->lp_string();
  if (!r->ok() || !r->at_end()) return std::nullopt;
  return out;
}

std::string pop3_uidl_prefix(std::string_view user) { return checkpoint_prefix(user); }

std::string pop3_uidl(std::string_view user, std::string_view uidl) { return checkpoint(user, uidl); }

std::optional<std::string> decode_pop3_uidl(std::string_view k, std::string_view user) {
  auto d = decode_checkpoint(k);  // the same [fmt][lp][lp] shape
  if (!d || d->user != user) return std::nullopt;
  return std::move(d->folder);
}

std::string index_prefix(std::string_view target) {
  auto k = with_format(4 + target.size() + 8 + 4 + 48);
  codec::put_lp_string(k, target);
  return k;
}

std::string index(std::string_view target, std::int64_t date, std::string_view key) {
  auto k = index_prefix(target);
  codec::put_be64(k, ~codec::order_preserving(date));
  codec::put_lp_string(k, key);
  return k;
}

std::optional<index_key> decode_index(std::string_view k) {
  auto r = open(k);
  if (!r) return std::nullopt;
  index_key out;
  out.target = r->lp_string();
  out.date = codec::from_order_preserving(~r->be64());
  out.key = r->lp_string();
  if (!r->ok() || !r->at_end()) return std::nullopt;
  return out;
}

std::string mailbox_state(std::string_view user) {
  auto k = with_format(4 + user.size());
  codec::put_lp_string(k, user);
  return k;
}

std::optional<std::string> decode_mailbox_state(std::string_view k) {
  auto r = open(k);
  if (!r) return std::nullopt;
  std::string user(r->lp_string());
  if (!r->ok() || !r->at_end()) return std::nullopt;
  return user;
}

std::string notification(std::int64_t at, std::string_view user, std::string_view kind) {
  auto k = with_format(16 + user.size() + kind.size());
  codec::put_be64(k, codec::order_preserving(at));
  codec::put_lp_string(k, user);
  codec::put_lp_string(k, kind);
  return k;
}

std::optional<notification_key> decode_notification(std::string_view k) {
  auto r = open(k);
  if (!r) return std::nullopt;
  notification_key out;
  out.at = codec::from_order_preserving(r->be64());
  out.user = r->lp_string();
  out.kind = r->lp_string();
  if (!r->ok() || !r->at_end()) return std::nullopt;
  return out;
}

std::string rule_stat(std::string_view name) { return mailbox_state(name); }  // same shape

std::optional<std::string> decode_rule_stat(std::string_view k) { return decode_mailbox_state(k); }

std::string outbox(std::string_view message_id) { return mailbox_state(message_id); }  // same shape

std::optional<std::string> decode_outbox(std::string_view k) { return decode_mailbox_state(k); }

}  // namespace keys

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// FNV-1a 64 with a caller-chosen offset basis; two bases give a 128-bit fingerprint. Not
// cryptographic: it only has to be stable across builds and platforms and spread well.
std::uint64_t fnv1a(std::string_view data, std::uint64_t basis) {
  std::uint64_t h = basis;
  for (char c : data) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

std::string normalise_message_id(std::string_view message_id) {
  std::string out;
  out.reserve(message_id.size());
  for (char c : trim(message_id))
    if (!is_space(c)) out.push_back(c);
  if (out.size() >= 2 && out.front() == '<' && out.back() == '>') {
    out.pop_back();
    out.erase(0, 1);
  }
  if (auto at = out.rfind('@'); at != std::string::npos)
    for (std::size_t i = at + 1; i < out.size(); ++i) out[i] = ascii_lower(out[i]);
  return out;
}

std::string message_key(std::string_view message_id, std::int64_t date, std::uint64_t size,
                        std::string_view from, std::string_view subject) {
  if (auto id = normalise_message_id(message_id); !id.empty()) return "<" + id + ">";
  std::string from_lower(trim(from));
  for (auto& c : from_lower) c = ascii_lower(c);
  std::string material;
  codec::put_be64(material, codec::order_preserving(date));
  codec::put_be64(material, size);
  codec::put_lp_string(material, from_lower);
  codec::put_lp_string(material, trim(subject));
  const std::uint64_t h1 = fnv1a(material, 0xcbf29ce484222325ull);
  const std::uint64_t h2 = fnv1a(material, 0x84222325cbf29ce4ull);
  static constexpr std::array<char, 16> hex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                               '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string key = "fp:";
  for (std::uint64_t h : {h1, h2})
    for (int shift = 60; shift >= 0; shift -= 4) key.push_back(hex[(h >> shift) & 0xf]);
  return key;
}

}  // namespace mscan::storage
