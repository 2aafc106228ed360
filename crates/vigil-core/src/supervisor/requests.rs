//! The supervisor's side of the dynamic children API (`SupervisorRef`).

use super::builder::check_significant;
use super::run::Sup;
use crate::error::{ControlError, StartError};
use crate::observe::{ChildState, StartOutcome};
use crate::protocol::Control;
use crate::restart::Restart;
use crate::spec::ChildSpec;

impl Sup {
    pub(super) fn on_control(&mut self, control: Control, caller: Option<u64>) {
        match control {
            Control::Start(spec, answer) => {
                let _ = answer.send(self.add_and_start(spec));
            }
            Control::Terminate(id, answer) => {
                let Some(i) = self.find(&id) else {
                    let _ = answer.send(Err(ControlError::NotFound(id)));
                    return;
                };
                let key = self.children[i].key;
                // A child terminating itself waits for this answer before it
                // can return and stop: answer first, then wait for it.
                let answer = if caller == Some(key) {
                    let _ = answer.send(Ok(()));
                    None
                } else {
                    Some(answer)
                };
                for timer in &mut self.timers {
                    timer.group.retain(|&k| k != key);
                }
                self.stop_child(i, ChildState::Stopped);
                if self.dynamic || self.children[i].spec.common.restart == Restart::Temporary {
                    self.remove(i);
                } else {
                    self.keep_stopped(i);
                }
                if let Some(answer) = answer {
                    let _ = answer.send(Ok(()));
                }
            }
            Control::Restart(id, answer) => {
                let result = match self.find(&id) {
                    None => Err(ControlError::NotFound(id)),
                    Some(i) if matches!(self.children[i].state, ChildState::Running | ChildState::Starting) => {
                        Err(ControlError::Running(id))
                    }
                    Some(i) => {
                        let key = self.children[i].key;
                        for timer in &mut self.timers {
                            timer.group.retain(|&k| k != key);
                        }
                        self.start_child(key).map_err(|reason| {
                            if let Some(i) = self.index(key) {
                                self.children[i].state = ChildState::Stopped;
                                self.sync(i);
                            }
                            ControlError::Start(StartError::Child { path: format!("{}/{id}", self.path), reason })
                        })
                    }
                };
                let _ = answer.send(result);
            }
            Control::Delete(id, answer) => {
                let result = match self.find(&id) {
                    None => Err(ControlError::NotFound(id)),
                    Some(i) if self.children[i].state != ChildState::Stopped => Err(ControlError::Running(id)),
                    Some(i) => {
                        self.remove(i);
                        Ok(())
                    }
                };
                let _ = answer.send(result);
            }
        }
    }

    pub(super) fn add_and_start(&mut self, spec: ChildSpec) -> Result<StartOutcome, ControlError> {
        spec.validate(&self.path).map_err(ControlError::Config)?;
        check_significant(&spec, self.auto_shutdown, &self.path).map_err(ControlError::Config)?;
        let id = spec.common.id.clone();
        if self.find(&id).is_some() {
            return Err(ControlError::AlreadyExists(id));
        }
        if let Some(max) = self.max_children
            && self.children.len() >= max
        {
            return Err(ControlError::MaxChildren(max));
        }
        self.push_child(spec);
        let key = self.children[self.children.len() - 1].key;
        self.start_child(key).map_err(|reason| {
            let path = format!("{}/{id}", self.path);
            if let Some(i) = self.index(key) {
                self.remove(i);
            }
            ControlError::Start(StartError::Child { path, reason })
        })
    }
}
