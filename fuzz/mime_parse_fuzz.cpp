// libFuzzer target for the MIME parser: parse_message and the public helpers must never
// crash, hang or leak on any input, and every string they return must be valid UTF-8.
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

void require_utf8(std::string_view s) {
  if (!mscan::mime::detail::is_valid_utf8(s)) __builtin_trap();
}

void check(const std::vector<mscan::mime::address>& list) {
  for (const auto& a : list) {
    require_utf8(a.display_name);
    require_utf8(a.email);
    require_utf8(a.normalized);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  mscan::mime::parse_options opts;
  if (size > 0) {
    // The first byte picks options, so small limits get exercised too.
    opts.strip_subaddress = data[0] & 1;
    if (data[0] & 2) opts.max_headers = 4;
    if (data[0] & 4) opts.max_depth = 3;
    if (data[0] & 8) opts.max_parts = 5;
  }
  auto m = mscan::mime::parse_message(in, opts);
  for (const auto* s : {&m.message_id, &m.subject, &m.normalized_subject, &m.thread_index,
                        &m.thread_topic, &m.body_text, &m.reply_above})
    require_utf8(*s);
  for (const auto& r : m.references) require_utf8(r);
  for (const auto& r : m.in_reply_to) require_utf8(r);
  for (const auto* l : {&m.from, &m.sender, &m.reply_to, &m.to, &m.cc, &m.bcc, &m.delivered_to})
    check(*l);
  for (const auto& a : m.attachments) {
    require_utf8(a.name);
    require_utf8(a.type);
    require_utf8(a.content_id);
  }
  if (m.calendar) {
    require_utf8(m.calendar->summary);
    require_utf8(m.calendar->uid);
  }
  if (m.bounce)
    for (const auto& r : m.bounce->failed_recipients) require_utf8(r);
  if (m.warnings.size() > 64) __builtin_trap();

  require_utf8(mscan::mime::decode_encoded_words(in));
  check(mscan::mime::parse_address_list(in, opts));
  (void)mscan::mime::parse_date(in);
  require_utf8(mscan::mime::html_to_text(mscan::mime::to_utf8(in, "utf-8")));
  require_utf8(mscan::mime::to_utf8(in, size > 0 && (data[0] & 16) ? "shift_jis" : "iso-2022-jp"));
  return 0;
}
