#pragma once
// Turns one parsed message into the record the store keeps: its links to contacts, accounts,
// items and the mailbox owner, each with the reason `explain` shows.
#include "core/directory.hpp"
#include "protocols/mime/message.hpp"
#include "storage/store.hpp"

namespace mscan::core {

struct fetch_context {
  std::string user;
  std::string folder;
  std::uint32_t uidvalidity = 0;
  std::uint32_t uid = 0;
  std::uint64_t size = 0;
  std::int64_t internaldate = 0;
};

storage::message_record match_message(const directory& dir, const mime::message& msg,
                                      const fetch_context& ctx);

// Reference tokens in a subject: runs of [A-Za-z0-9_-] (so OPP-1042 never matches OPP-10421).
std::vector<std::string_view> subject_tokens(std::string_view subject);

} // namespace mscan::core
