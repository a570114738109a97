#pragma once
// Modified UTF-7 mailbox names (RFC 3501 5.1.3) <-> UTF-8.
#include <string>
#include <string_view>

#include "common/expected.hpp"

namespace mscan::imap {

// UTF-8 -> modified UTF-7. Fails on invalid UTF-8 (the error names the byte offset).
expected<std::string, std::string> utf7_encode(std::string_view utf8);
// Modified UTF-7 -> UTF-8. Fails on malformed input (bad base64, unpaired surrogates,
// raw 8-bit bytes, unterminated shift).
expected<std::string, std::string> utf7_decode(std::string_view mutf7);

} // namespace mscan::imap
