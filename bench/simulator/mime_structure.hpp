#pragma once
// The server side of MIME: splits a raw message into its entities (no RFC 2047/2231
// decoding: servers report parameters as sent), writes RFC 3501 BODYSTRUCTURE and extracts
// BODY[section] (RFC 3501 6.4.5). The simulator serves .eml files with it; the IMAP unit
// tests' transcript server (tests/unit/imap/mime_server.hpp) answers from it. No I/O.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mscan::sim {

struct mime_entity {
  std::string header;  // raw, with its blank line
  std::string body;    // raw
  std::string type = "text", subtype = "plain";
  std::vector<std::pair<std::string, std::string>> params, dparams;
  std::string disposition, id, description, encoding;
  std::vector<mime_entity> children;          // multipart
  std::unique_ptr<mime_entity> inner;         // message/rfc822
  mime_entity() = default;
  mime_entity(const mime_entity& o)
      : header(o.header), body(o.body), type(o.type), subtype(o.subtype), params(o.params),
        dparams(o.dparams), disposition(o.disposition), id(o.id), description(o.description),
        encoding(o.encoding), children(o.children),
        inner(o.inner ? std::make_unique<mime_entity>(*o.inner) : nullptr) {}
  mime_entity(mime_entity&&) = default;
  mime_entity& operator=(mime_entity&&) = default;
  mime_entity& operator=(const mime_entity& o) { return *this = mime_entity(o); }
};

// Parses a raw message (CRLF or LF line ends). Never fails: a multipart without a usable
// boundary is text/plain, nesting deeper than 20 levels is not split further.
mime_entity parse_entity(std::string_view raw, bool digest_child = false, int depth = 0);

// RFC 3501 BODYSTRUCTURE of an entity, with extension data.
std::string body_structure(const mime_entity& e);

// BODY[section] of a message (RFC 3501 6.4.5): "", HEADER, TEXT, and numbered parts with
// .MIME / .HEADER / .TEXT. Unknown sections give "".
std::string section_of(const mime_entity& root, std::string_view spec);

// RFC 3501 ENVELOPE of a header block: Sender and Reply-To default to From; addresses split
// at commas outside quotes, angle brackets and comments, groups flattened to their members.
std::string envelope_of(std::string_view header);

// The unfolded value of the first field `name` (case-insensitive); "" when absent.
std::string header_value(std::string_view header, std::string_view name);

// An IMAP string: quoted, or a literal when it holds CR, LF, NUL or 8-bit bytes.
std::string imap_string(std::string_view s);

} // namespace mscan::sim
