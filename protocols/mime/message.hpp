#pragma once
// The message model: RFC 5322 / MIME parsing into the fields the engine matches and stores.
// Pure functions over bytes: no I/O, no globals except a per-thread iconv descriptor cache.
// Bad input never fails: whatever could be read is returned, with `warnings`.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::mime {

struct address {
  std::string display_name; // decoded UTF-8
  std::string email;        // as written (local@domain), domain lower-cased
  std::string normalized;   // for matching: lower-cased whole; "+tag" stripped
                            // when parse_options::strip_subaddress
};

struct attachment {
  std::string name; // decoded UTF-8 file name (filename=, else name=); may be empty
  std::string type; // lower-cased media type, e.g. "application/pdf"
  std::string content_id;
  std::uint64_t size = 0; // decoded size (base64: exact from the alphabet count; others: encoded length)
  bool is_inline = false;
  bool is_tnef = false; // application/ms-tnef or winmail.dat
};

struct calendar_info {
  std::string method, uid, dtstart, summary;
};

struct bounce_info {
  std::vector<std::string> failed_recipients;
  std::string status; // first failed status code, e.g. "5.1.1"
};

struct parse_options {
  bool strip_subaddress = false;
  std::string reply_marker = "## Please reply above this line ##";
  std::size_t max_headers = 1000, max_depth = 32, max_parts = 1000;
  // false: reply_above stays empty (the caller extracts it only for the messages that need it,
  // e.g. ticket comments: core::link_message).
  bool reply_above = true;
};

struct message {
  std::string message_id; // "<...>" normalised (angle brackets kept) or empty
  std::vector<std::string> in_reply_to, references;
  std::string subject;            // decoded UTF-8
  std::string normalized_subject; // reply/forward prefixes removed (Re, Fwd, AW, WG, SV, VS, R, TR, ...)
  std::optional<std::int64_t> date; // unix seconds UTC (nullopt when unparseable)
  std::vector<address> from, sender, reply_to, to, cc, bcc, delivered_to;
  std::string thread_index, thread_topic;
  std::string body_text;   // best text/plain, else HTML->text; UTF-8
  std::string reply_above; // text above marker / quote header (whole body when neither is found)
  std::vector<attachment> attachments;
  std::optional<calendar_info> calendar;
  std::optional<bounce_info> bounce;
  std::vector<std::string> warnings; // parse warnings; never fatal (capped at 64)
};

message parse_message(std::string_view raw, const parse_options& opts = {});
std::string decode_encoded_words(std::string_view header_value); // RFC 2047
std::string to_utf8(std::string_view bytes, std::string_view charset, bool* lossy = nullptr);
std::vector<address> parse_address_list(std::string_view value, const parse_options& = {});

// Helpers exposed for tests and for other layers that see header values alone.
// The `address::normalized` form of an e-mail address: lower-cased (ASCII, Latin, Greek,
// Cyrillic), IDNA "xn--" labels decoded to UTF-8, "+tag" dropped when strip_subaddress.
// Use it on configured contact addresses so they compare equal to parsed ones.
std::string normalize_email(std::string_view email, const parse_options& opts = {});
std::optional<std::int64_t> parse_date(std::string_view value);   // RFC 5322 + broken forms
std::string normalize_subject(std::string_view decoded_subject);
std::string html_to_text(std::string_view html);                  // input and output UTF-8
std::string extract_reply_above(std::string_view body_text, std::string_view marker);

} // namespace mscan::mime
