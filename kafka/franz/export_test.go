package franz

import "time"

// SetRefreshInterval shortens the period of c's watermark refresh; call it before
// Subscribe.
func SetRefreshInterval(c *Consumer, d time.Duration) { c.refreshInterval = d }
