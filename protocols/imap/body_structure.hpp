#pragma once
// BODYSTRUCTURE (RFC 3501 7.4.2 / RFC 9051 7.5.2) in typed form, and what the scan needs from
// it: which sections hold the text the matcher reads, and a synthetic RFC 5322 message that
// reproduces the MIME tree with those texts present and every other part as a headers-only
// stub, so that the MIME parser reads subject, addresses, body text and attachment names as it
// would from the whole message — without the attachment bytes ever crossing the network.
//
// Which texts: the MIME parser takes the first inline text/plain of the message (plus the
// further inline text/plain parts of the same multipart/mixed), else the first inline
// text/html, and looks inside attached messages only when the message itself has no text.
// The plan mirrors that on the structure: every inline text/plain outside attached messages,
// the first inline text/html only when those plain parts are (nearly) empty, then the same
// inside attached messages; plus the first calendar and every delivery-status report.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/imap/response.hpp"

namespace mscan::imap {

using mime_params = std::vector<std::pair<std::string, std::string>>;  // as sent

struct body_part {
  std::string type, subtype;           // lower-cased ("text", "plain")
  mime_params params;                  // Content-Type parameters
  std::string id, description;         // Content-ID, Content-Description (empty for NIL)
  std::string encoding;                // lower-cased Content-Transfer-Encoding
  std::uint64_t size = 0;              // encoded octets of the body (server's count)
  std::string disposition;             // lower-cased; empty when none
  mime_params disposition_params;
  std::vector<body_part> children;     // multipart parts, or the body of a message/rfc822
  std::string section;                 // IMAP part number: "" (root), "1", "2.1", ...
  bool multipart() const { return type == "multipart"; }
  bool message() const;                // message/rfc822 or message/global
  const std::string* param(std::string_view name) const;   // case-insensitive
  std::string file_name() const;       // filename (disposition) else name (type), as sent
};

struct body_structure_limits { std::size_t max_depth = 32, max_parts = 1000; };

// nullopt when the tree is not a BODYSTRUCTURE (or breaks a limit). Sections are numbered.
std::optional<body_part> parse_body_structure(const sexp& tree, const body_structure_limits& = {});
std::optional<body_part> parse_body_structure(sexp&& tree, const body_structure_limits& = {});

// One attachment as the server describes it: no byte of it is downloaded.
struct attachment_stub {
  std::string name;          // filename / name parameter as sent (RFC 2047/2231 not decoded)
  std::string type;          // lower-cased media type, "application/pdf"
  std::string content_id;
  std::string disposition;   // lower-cased, may be empty
  std::string encoding;      // lower-cased transfer encoding
  std::uint64_t size = 0;    // encoded octets (BODYSTRUCTURE size)
  std::uint64_t decoded_size = 0;  // base64: estimated from size (76-column lines); else size
  std::string section;       // IMAP part number, for a later BODY.PEEK[section] if wanted
};

// What to fetch after BODYSTRUCTURE and HEADER, and how to put the message together.
struct fetch_plan {
  std::vector<std::string> sections;   // section specs: "1.MIME", "1", "2.HEADER", "TEXT", ...
  std::vector<std::string> capped;     // the subset fetched with a byte cap <0.N>
  std::vector<attachment_stub> attachments;
  // FETCH items for the second command, e.g. "BODY.PEEK[1.MIME] BODY.PEEK[1]<0.65536>";
  // empty when the header and structure are all that is needed. cap 0 = no byte cap.
  std::string items(std::size_t cap) const;
};

// `header`: the message's header block (BODY[HEADER]); when its Content-Type disagrees with
// the structure (multipart or not), the plan is the whole message, capped.
// text = false (the header path): no text section at all; calendar and delivery-status parts
// are listed as attachment stubs, attached messages get stub headers.
fetch_plan plan_fetch(const body_part& root, std::string_view header, bool text = true);

// Builds the synthetic message. `sections` maps a section spec (as in the plan) to its bytes.
// `truncated` is set when a fetched text part is longer than `cap`.
std::string assemble_message(const body_part& root, std::string_view header,
                             const std::map<std::string, std::string, std::less<>>& sections,
                             std::size_t cap, bool& truncated);

} // namespace mscan::imap
