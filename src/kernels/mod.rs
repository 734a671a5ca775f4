//! Fused kernels: pure functions over slices and scalars. They know no tape and
//! no loss type; losses and tape ops call them.

pub(crate) mod distance;
pub(crate) mod pointwise;
pub(crate) mod scalar;
pub(crate) mod softmax;
