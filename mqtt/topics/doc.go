// Package topics indexes MQTT subscriptions and retained topic names for the
// publish path.
//
// Tree answers "who receives a PUBLISH on this topic?": each level of a
// filter is a node holding its literal tokens (a slice, indexed by a map once
// there are many) plus dedicated children for the single-level wildcard '+'
// and the multi-level wildcard '#', so a match visits at most three children
// per topic level however many subscriptions there are. Topics are split in
// place (substring views, no allocation). An optional bounded cache maps
// topic names to their Result; a topic enters it on its second miss within a
// short while, so topics published once do not churn it. The cache is kept
// correct by removing, on every Subscribe and Unsubscribe, the cached topics
// that the changed filter matches (found through a trie of the cached names,
// so the cost does not grow with the cache size).
//
// Index is the reverse structure for retained messages: it stores topic
// names and answers "which stored topics does this filter match?".
//
// Matching follows MQTT 3.1.1 and 5.0 section 4.7: '+' matches exactly one
// level, which may be empty; '#' matches the parent level and any number of
// child levels; topic levels are compared byte for byte; filters whose first
// character is a wildcard never match topic names beginning with '$'. Filters
// are assumed to have been validated by the caller (packets.ValidTopicFilter); an
// invalid filter is stored without error but matches nothing useful.
//
// # Locks
//
// Tree has two locks, always taken in this order: Tree.mu (sync.RWMutex),
// then the cache's mu (sync.Mutex). Cache lookups take no lock at all (the
// cache's topic map is a sync.Map).
//
//   - Subscribe and Unsubscribe hold Tree.mu for writing. While holding it
//     they first delete the cached topics that the changed filter matches and
//     only then change the tree, so once the write lock is released no cached
//     Result describes the old tree: a Match that starts after Subscribe or
//     Unsubscribe returns sees the change.
//   - Match first looks the topic up in the cache; a hit touches no lock, so
//     subscription churn never stalls publishers of cached topics. On a miss
//     Match takes Tree.mu for reading, computes the Result and, if the topic
//     is admitted, stores it in the cache (cache mu) while still holding
//     Tree.mu, so an insert can never race with an invalidation.
//   - Count takes Tree.mu for reading. No callback is ever run under a Tree
//     lock.
//
// A Result returned by Match may be shared by many callers (it is cached):
// treat it and every slice in it as read-only.
//
// Index has a single sync.RWMutex. Index.Match calls its callback while
// holding the read lock, so the callback must not call Set or Delete on the
// same Index (that would deadlock) and should be quick.
package topics
