//! Combining the watermarks of a task's input channels.
//!
//! The task's watermark is the minimum over its input channels, leaving out idle channels and
//! counting a finished channel as +infinity (a bounded input that ended sent its final watermark).
//! It only moves forward. When every channel is idle, the task is idle too. This is Flink's
//! `StatusWatermarkValve`, as a pure struct.

/// Watermark and idleness state of one input channel.
#[derive(Clone, Copy, Debug)]
struct Channel {
    watermark: i64,
    idle: bool,
    finished: bool,
}

/// What changed after an input event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValveOutput {
    /// The combined watermark advanced to this value.
    pub watermark: Option<i64>,
    /// The task became idle (`true`) or active again (`false`).
    pub idle: Option<bool>,
}

/// Tracks the watermark of each input channel and the combined one.
#[derive(Clone, Debug)]
pub struct WatermarkValve {
    channels: Vec<Channel>,
    combined: i64,
    idle: bool,
}

impl WatermarkValve {
    pub fn new(channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                Channel {
                    watermark: i64::MIN,
                    idle: false,
                    finished: false,
                };
                channels
            ],
            combined: i64::MIN,
            idle: false,
        }
    }

    /// The current combined watermark (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.combined
    }

    /// A watermark arrived on `channel`. A watermark also marks the channel active.
    pub fn on_watermark(&mut self, channel: usize, watermark: i64) -> ValveOutput {
        let mut out = ValveOutput::default();
        if let Some(c) = self.channels.get_mut(channel) {
            if watermark > c.watermark {
                c.watermark = watermark;
            }
            if c.idle {
                c.idle = false;
            }
        }
        if self.idle {
            self.idle = false;
            out.idle = Some(false);
        }
        out.watermark = self.advance();
        out
    }

    /// `channel` went idle or became active.
    pub fn on_idle(&mut self, channel: usize, idle: bool) -> ValveOutput {
        let mut out = ValveOutput::default();
        if let Some(c) = self.channels.get_mut(channel) {
            c.idle = idle;
        }
        let all_idle = self.channels.iter().all(|c| c.idle || c.finished)
            && self.channels.iter().any(|c| c.idle);
        if all_idle != self.idle {
            self.idle = all_idle;
            out.idle = Some(all_idle);
        }
        if !all_idle {
            out.watermark = self.advance();
        }
        out
    }

    /// A record arrived on `channel`: a channel that delivers data is not idle.
    pub fn on_record(&mut self, channel: usize) -> ValveOutput {
        match self.channels.get(channel) {
            Some(c) if c.idle => self.on_idle(channel, false),
            _ => ValveOutput::default(),
        }
    }

    /// `channel` ended: it no longer holds the watermark back.
    pub fn on_end(&mut self, channel: usize) -> ValveOutput {
        if let Some(c) = self.channels.get_mut(channel) {
            c.finished = true;
            c.idle = false;
            c.watermark = i64::MAX;
        }
        ValveOutput {
            watermark: self.advance(),
            idle: None,
        }
    }

    /// True when every channel has ended.
    pub fn all_finished(&self) -> bool {
        self.channels.iter().all(|c| c.finished)
    }

    fn advance(&mut self) -> Option<i64> {
        let min = self
            .channels
            .iter()
            .filter(|c| !c.idle)
            .map(|c| c.watermark)
            .min()?;
        if min > self.combined {
            self.combined = min;
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_channels() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.on_watermark(0, 10).watermark, None);
        assert_eq!(v.on_watermark(1, 5).watermark, Some(5));
        assert_eq!(v.on_watermark(1, 20).watermark, Some(10));
        assert_eq!(v.on_watermark(0, 8).watermark, None, "never goes back");
    }

    #[test]
    fn idle_channels_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 100);
        assert_eq!(v.on_idle(1, true).watermark, Some(100));
        let out = v.on_idle(0, true);
        assert_eq!(out.idle, Some(true));
        let out = v.on_watermark(1, 50);
        assert_eq!(out.idle, Some(false));
        assert_eq!(out.watermark, None, "50 is behind 100");
        assert_eq!(v.on_record(0).idle, None);
    }

    #[test]
    fn finished_channels_count_as_infinite() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 7);
        assert_eq!(v.on_end(1).watermark, Some(7));
        assert_eq!(v.on_end(0).watermark, Some(i64::MAX));
        assert!(v.all_finished());
    }
}
