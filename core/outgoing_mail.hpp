#pragma once
// Composing outgoing mail (RFC 5322 + MIME): UTF-8 text/plain, quoted-printable body (every
// line short and 7-bit, so any server takes it without 8BITMIME), RFC 2047 encoded words for
// a non-ASCII subject or display name, threading headers.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::core {

struct outgoing_mail {
  std::string from_name, from_address;
  std::vector<std::string> to;          // bare addresses
  std::string subject;                  // UTF-8, one line
  std::string body;                     // UTF-8 text, any line ends
  std::string message_id;               // "<...>"
  std::string in_reply_to;              // "<...>" or empty
  std::vector<std::string> references;  // "<...>" each, oldest first
  std::int64_t date = 0;                // unix seconds
  bool auto_submitted = false;          // notifications: "Auto-Submitted: auto-generated"
};

// A new globally unique Message-ID in the sender's domain: "<mailscan.TIME.RANDOM@domain>".
std::string new_message_id(std::string_view from_address);
// The message with CRLF line ends, ready for smtp::envelope::data.
std::string compose(const outgoing_mail& m);
// RFC 2047 B-encoding of a header text when it is not plain ASCII (else unchanged).
std::string encode_header_text(std::string_view utf8);

} // namespace mscan::core
