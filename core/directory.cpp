#include "core/directory.hpp"

#include <array>

#include "protocols/mime/message.hpp"

#include <algorithm>

namespace mscan::core {

namespace {
std::string lower_ascii(std::string_view v) {
  std::string s{v};
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
} // namespace

// The same normal form the message parser gives addresses (case folding, IDNA labels,
// optional +tag stripping), so a configured contact matches however the mail spells it.
std::string normalize_address(std::string_view email, bool strip_subaddress) {
  mime::parse_options o;
  o.strip_subaddress = strip_subaddress;
  return mime::normalize_email(email, o);
}

const std::vector<std::string>& default_freemail_domains() {
  static const std::vector<std::string> list{
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com",
    "msn.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "aol.com", "icloud.com", "me.com",
    "mac.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com", "proton.me",
    "protonmail.com", "zoho.com", "yandex.com", "yandex.ru", "mail.ru", "qq.com", "163.com",
    "126.com", "t-online.de", "orange.fr", "free.fr", "libero.it", "fastmail.com"};
  return list;
}

directory::directory(const config& cfg)
  : contact_store_(cfg.contacts),
    account_store_(cfg.accounts),
    item_store_(cfg.items),
    mailbox_store_(cfg.mailboxes) {
  contacts_.reserve(contact_store_.size());
  const bool strip = cfg.engine.strip_subaddress;
  for (auto& c : contact_store_)
    contacts_[normalize_address(c.email, strip)].push_back(&c);
  // Domains: through the address normaliser too, so IDN domains compare in one form.
  auto domain_form = [](std::string_view d) {
    auto n = normalize_address(std::string{"x@"} + std::string{d}, false);
    return n.substr(n.find('@') + 1);
  };
  for (auto& a : account_store_)
    for (auto& d : a.domains)
      domains_.emplace(domain_form(d), &a);
  for (auto& i : item_store_)
    items_.emplace(lower_ascii(i.reference), &i);
  for (auto& m : mailbox_store_)
    if (!m.address.empty())
      users_.emplace(normalize_address(m.address, strip), &m);
  for (auto& d : cfg.engine.internal_domains)
    internal_.insert(domain_form(d));
  for (auto& d : cfg.engine.freemail_domains.empty() ? default_freemail_domains() : cfg.engine.freemail_domains)
    freemail_.insert(domain_form(d));
}

const std::vector<const contact_config*>* directory::contacts_for(std::string_view email) const {
  auto it = contacts_.find(email);
  return it == contacts_.end() ? nullptr : &it->second;
}

const account_config* directory::account_for_domain(std::string_view domain) const {
  // Exact domain first, then parents (mail.acme.example -> acme.example), but a parent only
  // links when its account says parent_domains = true.
  std::string_view d = domain;
  bool parent = false;
  while (!d.empty()) {
    if (auto it = domains_.find(d); it != domains_.end())
      if (!parent || it->second->parent_domains)
        return it->second;
    parent = true;
    auto dot = d.find('.');
    if (dot == std::string_view::npos)
      break;
    d.remove_prefix(dot + 1);
    if (d.find('.') == std::string_view::npos)
      break;  // never match a bare TLD
  }
  return nullptr;
}

const item_config* directory::item_for(std::string_view reference) const {
  // References are short tokens: lower-cased on the stack, no allocation.
  std::array<char, 64> buf;
  if (reference.size() > buf.size()) {
    auto it = items_.find(lower_ascii(reference));
    return it == items_.end() ? nullptr : it->second;
  }
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const char c = reference[i];
    buf[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  auto it = items_.find(std::string_view(buf.data(), reference.size()));
  return it == items_.end() ? nullptr : it->second;
}

bool directory::is_internal(std::string_view domain) const { return internal_.contains(domain); }
bool directory::is_freemail(std::string_view domain) const { return freemail_.contains(domain); }

const mailbox_config* directory::user_for(std::string_view email) const {
  auto it = users_.find(email);
  return it == users_.end() ? nullptr : it->second;
}

} // namespace mscan::core
