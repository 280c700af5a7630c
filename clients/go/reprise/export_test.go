package reprise

// QueuedSubmits is how many submissions wait in c's queue for the next call,
// including any whose callers have left since. Tests wait on it instead of
// sleeping.
func QueuedSubmits(c *Client) int {
	c.submits.mu.Lock()
	defer c.submits.mu.Unlock()
	return len(c.submits.queue)
}
