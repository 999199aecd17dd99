//! GPU telemetry from NVML, read at scrape time: `hearth_gpu_utilization_ratio`,
//! `hearth_gpu_memory_used_bytes`, `hearth_gpu_memory_total_bytes`,
//! `hearth_gpu_temperature_celsius` and `hearth_gpu_power_watts`, labelled `gpu` (the NVML
//! index) and `name` (the model of card).
//!
//! `libnvidia-ml.so.1` is loaded at run time by nvml-wrapper. Where it is absent (no NVIDIA
//! driver, a CPU container) [`GpuCollector::open`] returns `None`, the collector is not
//! registered and the series are simply absent. A reading a card does not support (power on
//! some boards) leaves out that one sample; a family with no sample is left out whole.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Most devices reported, a bound on the series count whatever the driver says.
const MAX_DEVICES: u32 = 64;

/// One scrape's reading of one device; `None` where the device did not answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub name: String,
    pub utilization: Option<f64>,
    pub memory_used: Option<f64>,
    pub memory_total: Option<f64>,
    pub temperature: Option<f64>,
    pub power_watts: Option<f64>,
}

/// The NVML handle, kept for the life of the process.
#[derive(Debug)]
pub struct GpuCollector {
    nvml: Nvml,
    devices: u32,
    names: Vec<String>,
}

impl GpuCollector {
    /// Load NVML and count the devices; `None` (and one log line) where there is no NVIDIA driver.
    pub fn open() -> Option<Self> {
        let nvml = match Nvml::init() {
            Ok(nvml) => nvml,
            Err(e) => {
                tracing::info!(reason = %e, "NVML is not available; GPU metrics are off.");
                return None;
            }
        };
        let devices = nvml.device_count().map_or(0, |n| n.min(MAX_DEVICES));
        let names = (0..devices)
            .map(|i| nvml.device_by_index(i).and_then(|d| d.name()).unwrap_or_else(|_| "unknown".into()))
            .collect();
        tracing::info!(devices, "NVML loaded; reporting GPU metrics.");
        Some(Self { nvml, devices, names })
    }

    fn read(&self) -> Vec<GpuReading> {
        (0..self.devices)
            .filter_map(|index| {
                let device = self.nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok();
                Some(GpuReading {
                    index,
                    name: self.names.get(index as usize).cloned().unwrap_or_default(),
                    utilization: device.utilization_rates().ok().map(|u| f64::from(u.gpu) / 100.0),
                    memory_used: memory.as_ref().map(|m| m.used as f64),
                    memory_total: memory.as_ref().map(|m| m.total as f64),
                    temperature: device.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                    power_watts: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                })
            })
            .collect()
    }
}

impl Collector for GpuCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_readings(&self.read(), encoder)
    }
}

/// Write the families for these readings.
pub fn encode_readings(readings: &[GpuReading], mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    type Family = (&'static str, &'static str, fn(&GpuReading) -> Option<f64>);
    let families: [Family; 5] = [
        ("hearth_gpu_utilization_ratio", "Fraction of the last sample period in which a kernel ran on the GPU", |r| r.utilization),
        ("hearth_gpu_memory_used_bytes", "GPU memory allocated", |r| r.memory_used),
        ("hearth_gpu_memory_total_bytes", "GPU memory installed", |r| r.memory_total),
        ("hearth_gpu_temperature_celsius", "GPU die temperature", |r| r.temperature),
        ("hearth_gpu_power_watts", "GPU power draw", |r| r.power_watts),
    ];
    for (name, help, value) in families {
        if readings.iter().all(|r| value(r).is_none()) {
            continue;
        }
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for r in readings {
            if let Some(v) = value(r) {
                let index = r.index.to_string();
                let labels = [("gpu", index.as_str()), ("name", r.name.as_str())];
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Fixed(Vec<GpuReading>);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_readings(&self.0, encoder)
        }
    }

    fn scrape(readings: Vec<GpuReading>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(readings)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn each_device_gets_its_samples_and_missing_readings_are_left_out() {
        let card = |index, power| GpuReading {
            index,
            name: "NVIDIA H100".into(),
            utilization: Some(0.5),
            memory_used: Some(1024.0),
            memory_total: Some(4096.0),
            temperature: Some(40.0),
            power_watts: power,
        };
        let out = scrape(vec![card(0, Some(70.5)), card(1, None)]);
        assert!(out.contains("hearth_gpu_utilization_ratio{gpu=\"1\",name=\"NVIDIA H100\"} 0.5"), "{out}");
        assert!(out.contains("hearth_gpu_power_watts{gpu=\"0\",name=\"NVIDIA H100\"} 70.5"), "{out}");
        assert!(!out.contains("hearth_gpu_power_watts{gpu=\"1\""), "{out}");
        assert_eq!(out.matches("# TYPE hearth_gpu_memory_total_bytes gauge").count(), 1, "{out}");
    }

    #[test]
    fn no_devices_no_series() {
        assert_eq!(scrape(Vec::new()), "# EOF\n");
    }
}
