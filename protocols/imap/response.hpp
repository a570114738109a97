#pragma once
// Typed IMAP server responses, as produced by response_parser. The parser knows the grammar
// (RFC 3501 / 9051 and the extensions a scanner meets); it knows nothing of what the client
// asked — scan_session gives the responses their meaning.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mscan::imap {

enum class status_kind { ok, no, bad, preauth, bye };

// Response codes (the bracketed part of a status response), RFC 3501 7.1, RFC 5530, RFC 7162.
enum class code_kind {
  none, alert, badcharset, capability, parse, permanentflags, read_only, read_write, trycreate,
  uidnext, uidvalidity, unseen, highestmodseq, nomodseq, appenduid, copyuid, uidnotsticky,
  closed, authenticationfailed, authorizationfailed, expired, privacyrequired, contactadmin,
  noperm, inuse, expungeissued, corruption, serverbug, clientbug, cannot, limit, overquota,
  alreadyexists, nonexistent, unavailable, webalert, other
};

struct response_code {
  code_kind kind = code_kind::none;
  std::string name;                // upper-case code name as sent (for `other`)
  std::string arguments;           // raw argument text after the name (may be empty)
  std::uint64_t number = 0;        // UIDNEXT, UIDVALIDITY, UNSEEN, HIGHESTMODSEQ
  std::vector<std::string> list;   // CAPABILITY atoms, PERMANENTFLAGS flags, BADCHARSET
};

// `tag OK/NO/BAD [code] text` and `* OK/NO/BAD/PREAUTH/BYE [code] text`.
struct status_response {
  std::string tag;                 // empty for untagged
  status_kind status = status_kind::ok;
  response_code code;
  std::string text;
};

struct continuation { std::string text; };  // `+ text` (base64 challenge for AUTHENTICATE)

struct capability_data { std::vector<std::string> capabilities; };  // upper-cased

struct list_data {
  bool lsub = false;
  std::vector<std::string> flags;  // as sent, e.g. "\\Noselect", "\\Sent"
  std::optional<char> delimiter;   // nullopt = NIL (flat namespace)
  std::string mailbox;             // as sent (modified UTF-7 unless UTF8=ACCEPT)
  bool has_flag(std::string_view flag) const;  // case-insensitive
};

struct status_data {
  std::string mailbox;
  std::optional<std::uint32_t> messages, recent, uidnext, uidvalidity, unseen;
  std::optional<std::uint64_t> highestmodseq;
};

struct exists_data { std::uint32_t count = 0; };
struct recent_data { std::uint32_t count = 0; };
struct expunge_data { std::uint32_t seq = 0; };
struct vanished_data { bool earlier = false; std::string uids; };  // sequence-set text
struct flags_data { std::vector<std::string> flags; };
struct enabled_data { std::vector<std::string> capabilities; };
struct search_data { std::vector<std::uint32_t> ids; std::optional<std::uint64_t> modseq; };
struct esearch_data {
  std::string tag;                 // correlator, may be empty
  bool uid = false;
  std::optional<std::uint32_t> min, max, count;
  std::string all;                 // sequence-set text
  std::optional<std::uint64_t> modseq;
};

// A parsed generic value: what ENVELOPE and BODYSTRUCTURE are kept as.
struct sexp {
  enum class kind { nil, atom, string, list } type = kind::nil;
  std::string text;                // atom or string contents (unescaped)
  std::vector<sexp> items;         // list members
};

struct body_section {
  bool binary = false;             // BINARY[...] (RFC 3516) rather than BODY[...]
  std::string section;             // text between the brackets, e.g. "", "HEADER", "1.2"
  std::optional<std::uint32_t> origin;  // <origin> of a partial fetch
  std::optional<std::string> data;      // nullopt = NIL
};

struct fetch_data {
  std::uint32_t seq = 0;
  std::optional<std::uint32_t> uid;
  std::optional<std::vector<std::string>> flags;
  std::optional<std::string> internaldate;      // as sent, "17-Jul-1996 02:44:25 -0700"
  std::optional<std::uint64_t> rfc822_size;
  std::optional<sexp> envelope;
  std::optional<sexp> bodystructure;            // BODYSTRUCTURE or BODY (non-extensible)
  std::vector<body_section> sections;           // BODY[..], BINARY[..], RFC822(.HEADER/.TEXT)
  std::optional<std::uint64_t> modseq;
  std::optional<std::uint64_t> gm_msgid, gm_thrid;
  std::optional<std::vector<std::string>> gm_labels;
  std::optional<std::string> email_id;          // EMAILID (RFC 8474), without parentheses
  const body_section* find_section(std::string_view section) const;  // BODY[...] only
  body_section* find_section(std::string_view section);
};

// Any other untagged response (NAMESPACE, METADATA, ...): kept as its keyword.
struct other_data { std::string keyword; };

// `* ID ("name" "Dovecot" "vendor" NIL)` (RFC 2971): field/value pairs in the order sent,
// NIL values as empty strings; `* ID NIL` gives no fields.
struct id_data { std::vector<std::pair<std::string, std::string>> fields; };

using response = std::variant<status_response, continuation, capability_data, list_data,
                              status_data, exists_data, recent_data, expunge_data, vanished_data,
                              flags_data, enabled_data, search_data, esearch_data, fetch_data,
                              other_data, id_data>;

// ENVELOPE (RFC 3501 7.4.2) in typed form. Strings are as sent (RFC 2047 words undecoded).
// Group syntax appears as entries with a mailbox and no host (start: group name) and an
// entry with neither (end of group), exactly as the server lists them.
struct envelope_address {
  std::optional<std::string> name, adl, mailbox, host;
};
struct envelope {
  std::optional<std::string> date, subject;
  std::vector<envelope_address> from, sender, reply_to, to, cc, bcc;
  std::optional<std::string> in_reply_to, message_id;
};
// nullopt when the tree is not a 10-item ENVELOPE list.
std::optional<envelope> to_envelope(const sexp& tree);

// "17-Jul-1996 02:44:25 -0700" -> seconds since the epoch (UTC); nullopt if malformed.
std::optional<std::int64_t> parse_internaldate(std::string_view text);
// Seconds since the epoch -> "1-Feb-1994" (UTC date), the IMAP SEARCH date form.
std::string format_search_date(std::int64_t unix_seconds);
// Seconds since the epoch -> the start (00:00 UTC) of that UTC day: the day
// format_search_date() names.
std::int64_t utc_day_start(std::int64_t unix_seconds);

bool iequals(std::string_view a, std::string_view b);

} // namespace mscan::imap
