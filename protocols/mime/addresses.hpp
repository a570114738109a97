#pragma once
// Internal: address-list parsing with the message's fallback charset for raw 8-bit bytes.
#include "protocols/mime/message.hpp"

namespace mscan::mime::detail {

std::vector<address> parse_addresses(std::string_view unfolded, const parse_options& opts,
                                     std::string_view fallback_charset, std::size_t limit,
                                     bool* lossy = nullptr);
void finish_address(address& a, const parse_options& opts);
std::string normalize_for_matching(std::string_view email, bool strip_subaddress);

} // namespace mscan::mime::detail
