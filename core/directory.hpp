#pragma once
// The CRM directory the matcher consults: contacts by address, accounts by domain, items by
// reference. Built once per config load; every lookup is a hash probe (O(1) per address).
#include "core/config.hpp"

#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mscan::core {

// Hash and equality that take a string_view: lookups by a view of the mail's bytes need no
// std::string (one allocation per address, domain and subject token before).
struct text_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using text_map = std::unordered_map<std::string, V, text_hash, std::equal_to<>>;
using text_set = std::unordered_set<std::string, text_hash, std::equal_to<>>;

class directory {
 public:
  explicit directory(const config& cfg);

  // Contacts whose address equals `normalized_email` (more than one = ambiguous; all are linked).
  const std::vector<const contact_config*>* contacts_for(std::string_view normalized_email) const;
  // The account owning `domain` (exact match, then parent domains of accounts with
  // parent_domains = true), or null.
  const account_config* account_for_domain(std::string_view domain) const;
  const item_config* item_for(std::string_view reference) const;
  bool is_internal(std::string_view domain) const;
  bool is_freemail(std::string_view domain) const;
  // The mailbox owner (CRM user) whose address this is, or null.
  const mailbox_config* user_for(std::string_view normalized_email) const;

  std::size_t contact_count() const { return contacts_.size(); }

 private:
  std::vector<contact_config> contact_store_;
  std::vector<account_config> account_store_;
  std::vector<item_config> item_store_;
  std::vector<mailbox_config> mailbox_store_;
  text_map<std::vector<const contact_config*>> contacts_;
  text_map<const account_config*> domains_;
  text_map<const item_config*> items_;
  text_map<const mailbox_config*> users_;
  text_set internal_;
  text_set freemail_;
};

// An address in the form matching compares (mime::normalize_email: case folded, IDNA
// decoded, "+tag" stripped when configured).
std::string normalize_address(std::string_view email, bool strip_subaddress = false);
// The shipped list of free-mail domains (never an account link by domain).
const std::vector<std::string>& default_freemail_domains();

} // namespace mscan::core
