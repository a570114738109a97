#pragma once
// Deterministic message content for the simulator: every byte is a pure function of
// (seed, user, uid, options), so 50,000 mailboxes cost no memory and every run serves the
// same mail. No I/O here.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mscan::sim {

// splitmix64 finaliser over a combination of values: the simulator's only source of choice.
std::uint64_t mix(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0, std::uint64_t d = 0);
// Uniform in [0, 1) from a hash.
double unit_interval(std::uint64_t h);

struct mime_entity;

struct generated_message {
  std::string header;         // every header line, ending with the empty line (CRLF CRLF)
  std::string body;           // everything after the empty line
  std::string bodystructure;  // the parenthesised IMAP BODYSTRUCTURE (with extension data)
  std::string body_basic;     // the parenthesised IMAP BODY (no extension data)
  std::int64_t date = 0;      // Date: and INTERNALDATE, unix seconds UTC
  bool multipart = false;
  // Set when the message is a served .eml file: its parsed structure, for BODY[n.m...].
  const mime_entity* entity = nullptr;
  std::string full() const { return header + body; }
};

struct message_generator {
  std::uint64_t seed = 1;
  std::size_t messages = 20;
  std::size_t message_bytes = 4000;
  std::int64_t base_time = 0;  // date of the newest uid (== messages)

  generated_message generate(std::size_t user, std::uint32_t uid) const;
  std::int64_t date_of(std::uint32_t uid) const;
  // The initial \Seen flag: about two thirds of the mail has been read.
  bool initially_seen(std::size_t user, std::uint32_t uid) const;
};

// Midnight UTC of the day containing t.
std::int64_t midnight_utc(std::int64_t t);
// "Tue, 24 Nov 2026 06:00:00 +0000"
std::string rfc5322_date(std::int64_t t);
// "24-Nov-2026 06:00:00 +0000"
std::string internal_date(std::int64_t t);
// "24-Nov-2026" (or "4-Nov-2026") → midnight UTC of that day; -1 if malformed.
std::int64_t parse_imap_date(std::string_view s);

}  // namespace mscan::sim
