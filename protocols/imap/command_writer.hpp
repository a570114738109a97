#pragma once
// IMAP command serialisation: tags, atom / quoted / literal choice, mailbox name encoding.
//
// A command is one or more `parts`: part 0 is sent at once; each further part may be sent
// only after the server's `+` continuation (a synchronising literal). With LITERAL+ (or
// LITERAL- for literals up to 4096 bytes) every literal is non-synchronising and a command
// is always a single part.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::imap {

struct writer_caps {
  bool literal_plus = false;   // LITERAL+ (RFC 7888): {n+} for any size
  bool literal_minus = false;  // LITERAL- (RFC 7888): {n+} up to 4096 bytes
  bool utf8_accept = false;    // UTF8=ACCEPT enabled (RFC 6855): names sent as UTF-8
};

struct command {
  std::string tag;
  std::vector<std::string> parts;
};

class command_builder {
 public:
  command_builder(std::string tag, std::string_view verb, const writer_caps& caps);
  command_builder& atom(std::string_view a);      // SP + verbatim
  command_builder& astring(std::string_view s);   // SP + atom, quoted or literal, as needed
  command_builder& string(std::string_view s);    // SP + quoted or literal (never an atom)
  command_builder& mailbox(std::string_view utf8_name);  // SP + encoded per caps
  command_builder& raw(std::string_view r);       // verbatim, no separator
  command finish();                               // appends CRLF

 private:
  void literal(std::string_view s);
  command cmd_;
  writer_caps caps_;
};

class command_writer {
 public:
  explicit command_writer(std::string tag_prefix = "a") : prefix_(std::move(tag_prefix)) {}
  void set_caps(const writer_caps& c) { caps_ = c; }
  const writer_caps& caps() const { return caps_; }
  std::string next_tag() { return prefix_ + std::to_string(++counter_); }
  command_builder begin(std::string_view verb) { return command_builder(next_tag(), verb, caps_); }

 private:
  std::string prefix_;
  std::uint64_t counter_ = 0;
  writer_caps caps_;
};

// Sorted, unique ids -> compact sequence set "1:3,5,9:12".
std::string sequence_set(std::span<const std::uint32_t> sorted_ids);
std::string base64_encode(std::string_view bytes);
// SASL initial responses, base64-encoded. They carry the secret: never log them.
std::string sasl_plain(std::string_view user, std::string_view password);
std::string sasl_xoauth2(std::string_view user, std::string_view token);

} // namespace mscan::imap
